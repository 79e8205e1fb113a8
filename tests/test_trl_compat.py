"""Our stepwise export is TRL's PRM format: TRL's own tokenization and trainer accept it unchanged.

TRL's PRMTrainer lives in `trl.experimental.prm` in TRL 1.0-1.13 (removed in 1.14);
pyproject pins `trl>=1.0,<1.14` so this runs wherever the project installs.
"""

from __future__ import annotations

import pytest
from datasets import Features, List, Value
from export_fixture import build_fixture_warehouse

from prm_data.export import ExportConfig
from prm_data.export_run import run_export
from prm_data.train.data import tokenize_example
from prm_data.train.model import load_model, load_tokenizer
from prm_data.train.tiny import make_tiny_model

prm = pytest.importorskip("trl.experimental.prm", reason="TRL's PRMTrainer (trl>=1.0,<1.14) is not installed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def export_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("trl")
    wh = build_fixture_warehouse(root / "wh")
    export = run_export(wh, root / "export", ExportConfig(test_fraction=0.5, formats=("stepwise",)))
    return export.path, make_tiny_model(export.path, root / "tiny", vocab_size=300, hidden_size=16, num_heads=2)


@pytest.mark.parametrize("last_only", [False, True])
def test_trl_tokenize_row_reads_our_rows_and_agrees_with_ours_token_for_token(export_and_model, last_only):
    from prm_data.export import load_export

    export_dir, tiny = export_and_model
    tokenizer = load_tokenizer(str(tiny))
    train = load_export(export_dir)["train"]
    kwargs = {"tokenizer": tokenizer, "step_separator": "\n", "max_length": 64, "max_completion_length": None,
              "train_on_last_step_only": last_only, "is_eval": False}
    # exactly the map PRMTrainer.__init__ runs on a train dataset
    theirs = train.map(prm.PRMTrainer.tokenize_row, fn_kwargs=kwargs, remove_columns=train.features,
                       features=Features({"labels": List(Value("int64")), "input_ids": List(Value("int64"))}))
    for row, trl_row in zip(train, theirs):
        ours = tokenize_example(row, **kwargs)
        assert ours["input_ids"] == trl_row["input_ids"]
        assert ours["labels"] == trl_row["labels"]


def test_trl_prm_trainer_trains_on_our_export_unchanged(export_and_model, tmp_path):
    from prm_data.export import load_export

    export_dir, tiny = export_and_model
    tokenizer = load_tokenizer(str(tiny))
    data = load_export(export_dir)
    args = prm.PRMConfig(output_dir=str(tmp_path / "trl"), max_steps=2, per_device_train_batch_size=2,
                         bf16=False, gradient_checkpointing=False, report_to=[], save_strategy="no",
                         logging_steps=1, use_cpu=True, step_separator="\n", max_length=128)
    trainer = prm.PRMTrainer(model=load_model(str(tiny), tokenizer.pad_token_id), args=args,
                             processing_class=tokenizer, train_dataset=data["train"], eval_dataset=data["test"])
    out = trainer.train()
    assert out.global_step == 2
    assert "eval_accuracy" in trainer.evaluate()
