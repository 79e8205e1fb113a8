"""PRM fine-tuning on CPU: a tiny Llama from a config, a tokenizer trained here, nothing from a hub.

The data is the project's own: synthetic-policy rollouts with their true step
labels (prm_data/sim_labels.py), exported with `run_export` like real labels.
"""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from typer.testing import CliRunner

from prm_data.cli import app
from prm_data.export import ExportConfig, load_export
from prm_data.export_run import run_export
from prm_data.sim_labels import ORACLE_POLICY, SimLabelsConfig, write_sim_labels
from prm_data.train.config import TrainConfig
from prm_data.train.data import IGNORE, PadCollator, tokenize_dataset, tokenize_example
from prm_data.train.loop import train_prm
from prm_data.train.model import PRMScorer, load_model, load_tokenizer, prm_loss
from prm_data.train.tiny import make_tiny_model
from prm_data.warehouse import Warehouse

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    wh = Warehouse(root / "wh")
    write_sim_labels(wh, "sim-run", SimLabelsConfig(problems=48, rollouts_per_problem=4, error_rate=0.25))
    export = run_export(wh, root / "export", ExportConfig(policy=ORACLE_POLICY, test_fraction=0.25))
    tiny = make_tiny_model(export.path, root / "tiny", vocab_size=600, hidden_size=32, num_layers=2, num_heads=2)
    return wh, export.path, tiny, root


def test_the_tokenizer_is_trained_here_and_the_model_is_built_from_its_config(exported):
    _, export_dir, tiny, _ = exported
    assert not any(tiny.glob("*.safetensors"))  # a config, no weights
    tokenizer = load_tokenizer(str(tiny))
    step = load_export(export_dir)["train"][0]["completions"][0]
    assert tokenizer.decode(tokenizer.encode(step, add_special_tokens=False)) == step
    model = load_model(str(tiny), tokenizer.pad_token_id)
    assert model.config.num_labels == 2 and model.config.vocab_size == len(tokenizer)


def test_labels_sit_on_the_last_separator_token_after_each_step(exported):
    _, export_dir, tiny, _ = exported
    tokenizer = load_tokenizer(str(tiny))
    row = {"prompt": "Q", "completions": ["a b", "c"], "labels": [True, False], "values": [0.75, 0.0]}
    out = tokenize_example(row, tokenizer, step_separator="\n")
    sep = tokenizer.encode("\n", add_special_tokens=False)
    a_b, c = (tokenizer.encode(t, add_special_tokens=False) for t in ("a b", "c"))
    q = [tokenizer.bos_token_id] + tokenizer.encode("Q", add_special_tokens=False)
    assert out["input_ids"] == q + a_b + sep + c + sep
    labelled = [(i, lab) for i, lab in enumerate(out["labels"]) if lab != IGNORE]
    end_1, end_2 = len(q + a_b + sep) - 1, len(out["input_ids"]) - 1
    assert labelled == [(end_1, 1), (end_2, 0)]
    assert (out["soft_labels"][end_1], out["soft_labels"][end_2]) == (0.75, 0.0)


def test_soft_loss_is_cross_entropy_against_the_mc_value():
    logits = torch.tensor([[[0.0, 2.0], [1.0, -1.0]]])
    labels = torch.tensor([[1, IGNORE]])
    soft = torch.tensor([[0.75, -100.0]])
    p_good = torch.sigmoid(torch.tensor(2.0))
    expected = -(0.75 * torch.log(p_good) + 0.25 * torch.log(1 - p_good))
    assert prm_loss(logits, labels, soft, "soft").item() == pytest.approx(expected.item(), rel=1e-5)
    assert prm_loss(logits, labels, soft, "hard").item() == pytest.approx(
        -torch.log_softmax(logits[0, 0], -1)[1].item(), rel=1e-5)


def _base_rate_loss(export_dir) -> float:
    labels = [lab for row in load_export(export_dir)["train"]["labels"] for lab in row]
    p = sum(labels) / len(labels)
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def _train_set_loss(model, tokenizer, export_dir) -> float:
    """Hard-label loss over the whole train split in one batch (eval mode: deterministic)."""
    batch = PadCollator(tokenizer.pad_token_id)(list(tokenize_dataset(load_export(export_dir)["train"], tokenizer)))
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return prm_loss(logits, batch["labels"], batch["soft_labels"], "hard").item()


def test_the_tokenized_dataset_keeps_minus_100_off_the_step_ends(exported):
    _, export_dir, tiny, _ = exported
    train = load_export(export_dir)["train"]
    tokenized = tokenize_dataset(train, load_tokenizer(str(tiny)))
    for row, tok in zip(train, tokenized):
        labelled = [lab for lab in tok["labels"] if lab != IGNORE]
        assert labelled == [int(b) for b in row["labels"]]
        assert tok["labels"].count(IGNORE) == len(tok["labels"]) - len(labelled)


def test_training_lowers_the_loss_below_the_base_rate_and_the_checkpoint_reloads(exported):
    wh, export_dir, tiny, root = exported
    tokenizer = load_tokenizer(str(tiny))
    untrained = _train_set_loss(load_model(str(tiny), tokenizer.pad_token_id), tokenizer, export_dir)
    config = TrainConfig(dataset=str(export_dir), model=str(tiny), output_dir=str(root / "ckpt"),
                         learning_rate=3e-3, max_steps=30, per_device_batch_size=8, warmup_ratio=0.1)
    result = train_prm(config)
    assert result.steps == 30 and len(result.losses) == 30
    trained = _train_set_loss(result.model, tokenizer, export_dir)
    assert trained < untrained - 0.03
    assert trained < _base_rate_loss(export_dir) - 0.02  # it learned more than the share of good steps
    assert result.tokens_per_second > 0 and result.peak_gpu_memory_bytes is None

    in_memory = PRMScorer(result.model, tokenizer)
    reloaded = PRMScorer.from_checkpoint(root / "ckpt")
    items = [(r["problem"], r["steps"]) for r in load_export(export_dir, "processbench")["test"]]
    before, after = in_memory.score(items), reloaded.score(items)
    assert [len(s) for s in after] == [len(steps) for _, steps in items]
    assert torch.allclose(torch.tensor(sum(before, [])), torch.tensor(sum(after, [])), atol=1e-6)
    assert len(set(round(s, 3) for s in sum(after, []))) > 1  # a trained model, not a constant
    log = [json.loads(line) for line in (root / "ckpt" / "train_log.jsonl").read_text().splitlines()]
    assert [e["loss"] for e in log] == pytest.approx(result.losses)
    assert json.loads((root / "ckpt" / "train_config.json").read_text())["learning_rate"] == 3e-3


def test_a_prm_trained_on_a_learnable_error_mark_finds_every_held_out_first_error(tmp_path):
    """Train -> score -> ProcessBench wired end to end: when a wrong step carries its own mark, the
    trained scores sit on the right steps, point the right way, and find each first error exactly.
    (The arithmetic of the synthetic policy is beyond a tiny model trained from scratch: see
    docs/training.md for what the GPU check measured there.)"""
    from datasets import Dataset, DatasetDict

    from prm_data.evaluate import processbench_from_scores

    rng = random.Random(0)
    words = "alpha beta gamma delta kappa sigma omega zeta theta lambda".split()

    def solution() -> dict:
        n = rng.randint(2, 5)
        first_error = rng.choice([-1, -1, *range(n)])
        steps = [f"Step {i + 1}: {' '.join(rng.choices(words, k=4))} {'WRONG' if i == first_error else 'fine'}."
                 for i in range(n)]
        return {"prompt": "Combine the words.", "completions": steps, "first_error": first_error,
                "labels": [first_error == -1 or i < first_error for i in range(n)]}

    rows = [solution() for _ in range(600)]
    DatasetDict({"train": Dataset.from_list(rows[:500]), "test": Dataset.from_list(rows[500:])}).save_to_disk(
        str(tmp_path / "data"))
    tiny = make_tiny_model(tmp_path / "data", tmp_path / "tiny", vocab_size=256, hidden_size=64, num_layers=2,
                           num_heads=4)
    train_prm(TrainConfig(dataset=str(tmp_path / "data"), model=str(tiny), output_dir=str(tmp_path / "ckpt"),
                          max_steps=120, per_device_batch_size=16, learning_rate=3e-3))
    test = rows[500:]
    scores = PRMScorer.from_checkpoint(tmp_path / "ckpt").score([(r["prompt"], r["completions"]) for r in test])
    result = processbench_from_scores(scores, [r["first_error"] for r in test], threshold=0.5)
    assert result.n_erroneous > 20 and result.n_correct > 20
    assert result.f1 == 1.0, result


def test_prm_data_train_soft_labels_with_lora_then_eval_writes_results_and_a_plot(exported):
    wh, export_dir, tiny, root = exported
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--dataset", str(export_dir), "--model", str(tiny),
                                  "--out", str(root / "lora"), "--label-mode", "soft", "--lora", "--max-steps", "4",
                                  "--lr", "1e-2", "--batch-size", "4", "--set", "lora_r=4"])
    assert trained.exit_code == 0, trained.output
    assert "tokens/s" in trained.output and "peak GPU memory n/a (no GPU)" in trained.output
    assert not (root / "lora" / "adapter_config.json").exists()  # LoRA merged into a plain checkpoint
    plot = root / "eval.png"
    evaluated = runner.invoke(app, ["--warehouse", str(wh.root), "eval", "--dataset", str(export_dir),
                                    "--checkpoint", str(root / "lora"), "-t", "0.3", "-t", "0.6",
                                    "--plot", str(plot), "--run-id", "eval-prm"])
    assert evaluated.exit_code == 0, evaluated.output
    rows = wh.rows("SELECT * FROM eval_results WHERE run_id = 'eval-prm'")
    pb = {(r["metric"], r["threshold"]) for r in rows if r["benchmark"] == "processbench"}
    assert pb == {(m, t) for m in ("f1", "acc_erroneous", "acc_correct") for t in (0.3, 0.6)}
    bon = {r["metric"]: r["value"] for r in rows if r["benchmark"] == "best_of_n"}
    assert set(bon) == {"accuracy@min", "accuracy@last", "accuracy@product", "majority_vote", "random", "oracle"}
    assert all(0.0 <= v <= bon["oracle"] for k, v in bon.items() if k.startswith("accuracy@"))
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_a_bad_option_is_refused_before_training(exported):
    _, export_dir, tiny, root = exported
    result = CliRunner().invoke(app, ["train", "-d", str(export_dir), "-m", str(tiny), "--set", "label_mode=fuzzy"])
    assert result.exit_code == 2 and "label_mode" in result.output


def test_training_evaluates_on_the_test_split_and_logs_lr_grad_norm_and_eval_loss(exported):
    _, export_dir, tiny, root = exported
    result = train_prm(TrainConfig(dataset=str(export_dir), model=str(tiny), output_dir=str(root / "evald"),
                                   learning_rate=3e-3, max_steps=6, eval_steps=3, per_device_batch_size=8,
                                   warmup_ratio=0.5))
    log = [json.loads(line) for line in (root / "evald" / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4, 5, 6]
    assert [e["step"] for e in log if "eval_loss" in e] == [3, 6]
    lrs = [e["learning_rate"] for e in log]
    assert lrs[0] < lrs[2] and lrs[-1] < lrs[2]  # warmup then linear decay: the schedule is what is logged
    assert all(e["grad_norm"] > 0 for e in log)
    # the eval loss is the loss on the test split, measured with the model as it was at that step
    from prm_data.train.data import tokenize_dataset

    tokenizer = load_tokenizer(str(tiny))
    test = tokenize_dataset(load_export(export_dir)["test"], tokenizer, "\n", 1024)
    batch = PadCollator(tokenizer.pad_token_id)([test[i] for i in range(len(test))])
    with torch.no_grad():
        logits = result.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    final = prm_loss(logits, batch["labels"], batch["soft_labels"], "hard").item()
    # the eval loss averages per-batch losses (batches of 8), this one is over the whole split at once
    assert log[-1]["eval_loss"] == pytest.approx(final, rel=0.05)
    assert json.loads((root / "evald" / "metrics.json").read_text())["final_eval_loss"] == log[-1]["eval_loss"]


def test_train_shows_a_progress_bar(exported):
    _, export_dir, tiny, root = exported
    trained = CliRunner().invoke(app, ["train", "-d", str(export_dir), "-m", str(tiny), "--out", str(root / "bar"),
                                       "--max-steps", "2", "--batch-size", "4"])
    assert trained.exit_code == 0, trained.output
    assert "train: 100%" in trained.output and "2/2" in trained.output


def test_a_tracker_whose_package_is_not_installed_is_refused_before_training(exported):
    import importlib.util

    from prm_data.train.loop import TRACKER_PACKAGES

    _, export_dir, tiny, root = exported
    missing = [name for name, packages in TRACKER_PACKAGES.items()
               if all(importlib.util.find_spec(p) is None for p in packages)]
    if not missing:
        pytest.skip("every tracker accelerate knows is installed here")
    refused = CliRunner().invoke(app, ["train", "-d", str(export_dir), "-m", str(tiny), "--out", str(root / "nope"),
                                       "--set", f"report_to=[{missing[0]}]"])
    assert refused.exit_code == 1
    wanted = TRACKER_PACKAGES[missing[0]]
    assert f"report_to {missing[0]} needs the package `{wanted[0]}`" in refused.output
    assert f"pip install {wanted[0]}" in refused.output
    assert not (root / "nope").exists()


def tensorboard_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the TFRecord event files under `logdir`: tag -> [(step, value)], CRCs checked."""
    import struct

    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(logdir.rglob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):  # a record: u64 length, u32 masked crc of it, payload, u32 masked crc of that
            header = data[pos:pos + 8]
            (length,), (header_crc,) = struct.unpack("<Q", header), struct.unpack("<I", data[pos + 8:pos + 12])
            payload = data[pos + 12:pos + 12 + length]
            (payload_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
            assert masked_crc32c(header) == header_crc and masked_crc32c(payload) == payload_crc, path
            pos += 16 + length
            event = Event.FromString(payload)
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_report_to_tensorboard_writes_loss_learning_rate_grad_norm_and_eval_loss_as_event_scalars(exported):
    _, export_dir, tiny, root = exported
    out = root / "tensorboard"
    trained = CliRunner().invoke(app, ["train", "-d", str(export_dir), "-m", str(tiny), "--out", str(out),
                                       "--max-steps", "4", "--batch-size", "4", "--lr", "3e-3",
                                       "--set", "report_to=[tensorboard]", "--set", "eval_steps=2"])
    assert trained.exit_code == 0, trained.output
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    expected = {"train/loss": [(e["step"], e["loss"]) for e in log],
                "train/learning_rate": [(e["step"], e["learning_rate"]) for e in log],
                "train/grad_norm": [(e["step"], e["grad_norm"]) for e in log],
                "eval/loss": [(e["step"], e["eval_loss"]) for e in log if "eval_loss" in e]}
    assert [step for step, _ in expected["eval/loss"]] == [2, 4]
    scalars = tensorboard_scalars(out / "prm-data")  # accelerate's project folder is --out, the run "prm-data"
    assert set(scalars) == set(expected)
    for tag, points in expected.items():  # event files hold float32
        assert [s for s, _ in scalars[tag]] == [s for s, _ in points], tag
        assert [v for _, v in scalars[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag
