"""The dataset card (README.md with YAML metadata) of an export, built with huggingface_hub's `DatasetCard`.

The YAML front matter carries what the Hub reads (`DatasetCardData`: `license`,
`language`, `task_categories`, `size_categories`, `tags`, `pretty_name`,
`configs`). The provenance a user needs to trust the labels (the export
config, the runs behind it with their stored configs and git shas, the
labelers and prompt versions, what the runs paid, row counts and label
balance) is in `export.json` beside the card (`PROVENANCE_FILE`), which is
pushed with it; the card's body summarises it. `datasets.push_to_hub` later
adds `dataset_info` to the same front matter and keeps the rest.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
from datasets import DatasetDict

from prm_data.export import DEFAULT_FORMAT, FEATURES, PROVENANCE_FILE, SPLITS, ExportConfig, counts_of
from prm_data.exports import formats as trainer_formats
from prm_data.warehouse import Warehouse, load_query

COLUMN_DOCS = {
    "stepwise": {
        "problem_id": "id of the problem (warehouse `problems.problem_id`)",
        "rollout_id": "id of the solution the steps come from",
        "prompt": "the problem text",
        "completions": "the solution's steps, in order (the labelled prefix of the solution)",
        "labels": "one bool per step: True = the step is correct (TRL PRMTrainer's labels)",
        "values": "one float per step: the soft label (e.g. Monte Carlo value); 1.0/0.0 where only a hard "
                  "label exists",
        "label_sources": "per step, the labelers whose verdicts decided the label",
        "is_correct": "whether the solution's final answer is correct",
        "policy_model": "the model that wrote the solution",
        "tests_passed": "code problems: each unit test passed (True) or not, in the tests' order; null for "
                        "problems without unit tests",
    },
    "pairs": {
        "problem_id": "id of the problem",
        "node_id": "prefix-tree node both steps continue from",
        "prompt": "question and shared prefix steps, joined by the step separator, ending with one",
        "question": "the problem text",
        "prefix": "the shared prefix steps",
        "chosen": "the sibling step with the higher Monte Carlo value",
        "rejected": "the sibling step with the lower Monte Carlo value",
        "chosen_value": "Monte Carlo value of the chosen step (successes / samples)",
        "rejected_value": "Monte Carlo value of the rejected step",
        "margin": "chosen_value - rejected_value",
        "chosen_node_id": "tree node of the chosen step",
        "rejected_node_id": "tree node of the rejected step",
    },
    "processbench": {
        "id": "row id (the rollout id)",
        "problem_id": "id of the problem",
        "rollout_id": "id of the solution",
        "generator": "the model that wrote the solution",
        "problem": "the problem text",
        "steps": "every step of the solution",
        "label": "index of the earliest wrong step, -1 when every step is correct",
        "final_answer_correct": "whether the final answer is correct",
    },
}

COLUMN_DOCS.update(trainer_formats.COLUMN_DOCS)  # rl_rewards, openrlhf, verifier_sft

TRL_SNIPPET = '''```python
from datasets import load_dataset
from transformers import AutoModelForTokenClassification, AutoTokenizer
from trl.experimental.prm import PRMConfig, PRMTrainer  # trl>=1.0,<1.14 (trl.PRMTrainer before 1.0)

data = load_dataset("{repo}", "stepwise")
model_id = "Qwen/Qwen2.5-Math-1.5B"
model = AutoModelForTokenClassification.from_pretrained(model_id, num_labels=2)
tokenizer = AutoTokenizer.from_pretrained(model_id)
trainer = PRMTrainer(
    model=model,
    args=PRMConfig(output_dir="prm", step_separator="\\n"),
    processing_class=tokenizer,
    train_dataset=data["train"],  # extra columns (values, label_sources, ...) are dropped by PRMTrainer
    eval_dataset=data.get("test"),
)
trainer.train()
```'''


def _column(ds, name: str) -> pa.ChunkedArray:
    return ds.data.column(name)  # Arrow, not one Python object per row


def label_balance(datasets: dict[str, DatasetDict]) -> dict:
    """Per format and split: positive/negative steps (stepwise), error/correct rows (processbench)."""
    out: dict = {}
    if "stepwise" in datasets:
        out["stepwise"] = {}
        for split, ds in datasets["stepwise"].items():
            labels = pc.list_flatten(_column(ds, "labels"))
            steps = len(labels)
            positive = pc.sum(pc.cast(labels, pa.int64())).as_py() or 0
            out["stepwise"][split] = {
                "steps": steps, "positive": positive, "negative": steps - positive,
                "positive_fraction": round(positive / steps, 4) if steps else None,
            }
    if "processbench" in datasets:
        out["processbench"] = {}
        for split, ds in datasets["processbench"].items():
            erroneous = pc.sum(pc.cast(pc.not_equal(_column(ds, "label"), -1), pa.int64())).as_py() or 0
            out["processbench"][split] = {"erroneous": erroneous, "correct": ds.num_rows - erroneous}
    if "pairs" in datasets:
        out["pairs"] = {split: {"mean_margin": round(pc.mean(_column(ds, "margin")).as_py(), 4)}
                        for split, ds in datasets["pairs"].items()}
    return out


def card_metadata(warehouse: Warehouse, config: ExportConfig, datasets: dict[str, DatasetDict]) -> dict:
    """Everything the card states, as plain data (also written to export.json)."""
    from prm_data.provenance import git_sha

    params = {"policy": config.policy, "run_id": config.run_id}
    runs = warehouse.rows(load_query("card_runs"), params)
    costs: dict[str, dict] = {}
    for run in runs:
        raw = run.pop("config_json")
        run["config"] = json.loads(raw) if raw else None
        summary = run.pop("summary", None)
        for c in (json.loads(summary) if summary else {}).get("costs") or []:
            acc = costs.setdefault(c["purpose"], {"purpose": c["purpose"], "calls": 0, "prompt_tokens": 0,
                                                  "completion_tokens": 0})
            for k in ("calls", "prompt_tokens", "completion_tokens"):
                acc[k] += int(c.get(k, 0))
    metadata = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "export_git_sha": git_sha(),
        "export_config": config.model_dump(mode="json"),
        "runs": runs,
        "labelers": warehouse.rows(load_query("card_labelers"), params),
        "costs": [costs[k] for k in sorted(costs)],  # summed over the runs' cost tables (one row per purpose)
        "prompt_versions": warehouse.rows(load_query("card_prompt_versions"), params),
        "counts": counts_of(datasets),
        "label_balance": label_balance(datasets),
    }
    return json.loads(json.dumps(metadata, default=str))  # plain JSON types, safe for YAML


def _configs_yaml(counts: dict[str, dict[str, int]]) -> list[dict]:
    configs = []
    for fmt, by_split in counts.items():
        splits = [s for s in SPLITS if by_split.get(s)]
        if not splits:
            continue
        entry = {"config_name": fmt, "data_files": [{"split": s, "path": f"{fmt}/{s}-*"} for s in splits]}
        if fmt == DEFAULT_FORMAT:
            entry["default"] = True
        configs.append(entry)
    return configs


def size_category(rows: int) -> str:
    """The Hub's `size_categories` bucket of a row count."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if rows < limit:
            return name
    return "100M<n<1B"


def card_data(metadata: dict, config: ExportConfig):
    """The card's YAML metadata as huggingface_hub `DatasetCardData`."""
    from huggingface_hub import DatasetCardData

    rows = max((sum(by_split.values()) for by_split in metadata["counts"].values()), default=0)
    return DatasetCardData(
        pretty_name=config.pretty_name, license=config.license, language=list(config.language),
        task_categories=list(config.task_categories), size_categories=[size_category(rows)],
        tags=["process-reward-model", "prm", "step-level-supervision", "synthetic", "prm-data"],
        configs=_configs_yaml(metadata["counts"]))


def _cost_lines(metadata: dict) -> list[str]:
    costs = metadata.get("costs") or []
    if not costs:
        return ["No cost table was recorded for these runs."]
    lines = ["| paid for | calls | prompt tokens | completion tokens |", "|---|---|---|---|"]
    lines += [f"| {c['purpose']} | {c['calls']} | {c['prompt_tokens']} | {c['completion_tokens']} |" for c in costs]
    return lines


def render_card(metadata: dict, config: ExportConfig, repo_id: str = "<user>/<dataset>") -> str:
    """README.md text: `DatasetCard` YAML front matter, then what each format and column means."""
    from huggingface_hub import DatasetCard

    lines = [f"# {config.pretty_name}", "",
             "Step-level (process) supervision exported by prm-data from its warehouse: "
             f"final labels under the `{config.policy}` policy. Train and test are split by problem "
             f"({config.test_fraction:.0%} of problems in test), so no problem is in both.", "",
             "## Rows", "", "| format | train | test |", "|---|---|---|"]
    for fmt, by_split in metadata["counts"].items():
        lines.append(f"| {fmt} | {by_split['train']} | {by_split['test']} |")
    lines += ["", "## Label balance", "", "```json", json.dumps(metadata["label_balance"], indent=2), "```", ""]
    for fmt in metadata["counts"]:
        lines += [f"## `{fmt}` columns", "", "| column | type | meaning |", "|---|---|---|"]
        for name, feature in FEATURES[fmt].items():
            lines.append(f"| `{name}` | `{feature}` | {COLUMN_DOCS[fmt][name]} |")
        lines.append("")
    labelers = ", ".join(f"{r['labeler']} {r['labeler_version']}" for r in metadata["labelers"]) or "none recorded"
    lines += ["## Provenance", "",
              f"- labelers: {labelers}",
              f"- runs: {', '.join(r['run_id'] for r in metadata['runs']) or 'none'}",
              f"- exported from git commit `{metadata['export_git_sha']}` at {metadata['created_at']}",
              f"- the full run configs, labelers, prompt versions and counts are in `{PROVENANCE_FILE}` beside "
              "this card", "",
              "## What the runs paid", "", *_cost_lines(metadata), "",
              "## Train a PRM with TRL", "", TRL_SNIPPET.format(repo=repo_id), ""]
    lines += trainer_formats.card_markdown(metadata.get("trainer_formats", {}))
    card = DatasetCard(f"---\n{card_data(metadata, config).to_yaml()}\n---\n\n" + "\n".join(lines))
    return str(card)
