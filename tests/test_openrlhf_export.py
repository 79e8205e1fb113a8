"""Our `openrlhf` config is the layout OpenRLHF's own ProcessRewardDataset reads; TRL still reads `stepwise`.

OpenRLHF's `train_prm` and `ProcessRewardDataset` exist in openrlhf 0.5.7-0.8.11 (removed in
0.9.0); scripts/setup.sh installs openrlhf 0.8.11 with --no-deps (the dataset's import chain
needs only torch, transformers, datasets and tqdm; deepspeed, flash-attn, ray and vllm are
never imported). The `strategy` argument is what train_prm passes: an object whose `args` is
the argparse namespace of train_prm's flags.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pyarrow as pa
import pytest
from datasets import Features, List, Value
from sim_warehouse import build_sim_warehouse

from prm_data.export import ExportConfig, _query, load_export, resolve_policy
from prm_data.export_run import run_export
from prm_data.exports.openrlhf import OpenRLHFConfig, build_openrlhf_rows
from prm_data.train.tiny import train_tokenizer

orl = pytest.importorskip("openrlhf.datasets", reason="openrlhf<=0.8.11 (ProcessRewardDataset) is not installed")
pytestmark = pytest.mark.slow
PLACEHOLDER = "ки"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("openrlhf")
    wh = build_sim_warehouse(root)
    result = run_export(wh, root / "export", ExportConfig(test_fraction=0.3, formats=("stepwise", "openrlhf")))
    return wh, result.path


@pytest.fixture(scope="module")
def tokenizer(export):
    """A byte-level BPE tokenizer trained on the export, with the placeholder added as one token, as a
    model's tokenizer gets it for Math-Shepherd-style training (OpenRLHF asserts it is one token)."""
    train = load_export(export[1], "stepwise")["train"]
    tok = train_tokenizer(list(train["prompt"]) + [s for steps in train["completions"] for s in steps], 400)
    tok.add_tokens([PLACEHOLDER])
    return tok


def strategy(label_key: str):
    args = argparse.Namespace(input_key="input", label_key=label_key, placeholder_token=PLACEHOLDER,
                              reward_tokens=["+", "-"])
    return SimpleNamespace(args=args)


def supervised(dataset, i):
    input_ids, _, labels = dataset[i]
    positions = (labels[0] != -100).nonzero().flatten().tolist()
    return input_ids[0].tolist(), positions, labels[0]


def test_openrlhfs_dataset_supervises_exactly_one_position_per_step_with_its_label(export, tokenizer):
    _, path = export
    rows = load_export(path, "openrlhf")["train"]
    stepwise = {r["rollout_id"]: r for r in load_export(path, "stepwise")["train"]}
    dataset = orl.ProcessRewardDataset(rows, tokenizer, 4096, strategy("label"))
    plus, minus = (tokenizer.encode(t, add_special_tokens=False)[0] for t in "+-")
    assert len(dataset) == len(rows) == len(stepwise) > 5
    for i, row in enumerate(rows):
        truth = stepwise[row["rollout_id"]]
        input_ids, positions, labels = supervised(dataset, i)
        assert len(positions) == len(truth["completions"])
        assert [labels[p].item() for p in positions] == [plus if ok else minus for ok in truth["labels"]]
        # each supervised position sits right after its own step
        for p, step in zip(positions, truth["completions"]):
            assert tokenizer.decode(input_ids[:p]).rstrip().endswith(step)


def test_trl_tokenize_row_reads_the_stepwise_config_of_the_same_export_with_the_same_steps(export, tokenizer):
    prm = pytest.importorskip("trl.experimental.prm", reason="TRL's PRMTrainer (trl>=1.0,<1.14) is not installed")
    _, path = export
    train = load_export(path, "stepwise")["train"]
    theirs = train.map(prm.PRMTrainer.tokenize_row, remove_columns=train.features,
                       fn_kwargs={"tokenizer": tokenizer, "step_separator": "\n", "max_length": None,
                                  "max_completion_length": None, "train_on_last_step_only": False,
                                  "is_eval": False},
                       features=Features({"labels": List(Value("int64")), "input_ids": List(Value("int64"))}))
    orl_rows = {r["rollout_id"]: r["label"] for r in load_export(path, "openrlhf")["train"]}
    for row, trl_row in zip(train, theirs):
        trl_labels = [label for label in trl_row["labels"] if label != -100]
        assert trl_labels == [int(ok) for ok in row["labels"]]
        assert ["+" if ok else "-" for ok in trl_labels] == orl_rows[row["rollout_id"]]


def test_a_row_whose_text_already_holds_the_placeholder_is_left_out_and_counted(export):
    wh, _ = export
    stepwise = _query(wh, "stepwise", resolve_policy(wh, ExportConfig()))
    prompts = stepwise["prompt"].to_pylist()
    prompts[0] += f" (written {PLACEHOLDER})"  # the placeholder word in a problem statement
    steps = stepwise["completions"].to_pylist()
    steps[1][-1] += f" {PLACEHOLDER}"  # and at the end of a step
    edited = stepwise.set_column(stepwise.schema.get_field_index("prompt"), "prompt", pa.array(prompts))
    edited = edited.set_column(edited.schema.get_field_index("completions"), "completions",
                               pa.array(steps, pa.list_(pa.string())))
    rows, card = build_openrlhf_rows(edited, OpenRLHFConfig())
    assert card["left_out"] == {"text_contains_placeholder": 2}
    assert rows["rollout_id"].to_pylist() == stepwise["rollout_id"].to_pylist()[2:]


def test_other_placeholder_and_reward_tokens_mark_every_step_once(export):
    wh, _ = export
    stepwise = _query(wh, "stepwise", resolve_policy(wh, ExportConfig()))
    rows, card = build_openrlhf_rows(stepwise, OpenRLHFConfig(placeholder_token="<|step|>", positive_token="good",
                                                             negative_token="bad"))
    assert "--placeholder_token <|step|> --reward_tokens good bad" in card["train_prm_flags"]
    for text, labels, truth in zip(rows["input"].to_pylist(), rows["label"].to_pylist(),
                                   stepwise["labels"].to_pylist()):
        assert text.count("<|step|>") == len(truth)
        assert labels == ["good" if ok else "bad" for ok in truth]
