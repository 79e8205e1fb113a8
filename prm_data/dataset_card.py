"""The dataset card (README.md with YAML metadata) of an export.

The YAML front matter carries what the Hub reads (`configs`, `pretty_name`,
`tags`, `license`) and, under `prm_data`, the provenance a user needs to trust
the labels: the export config, the runs behind it with their stored configs
and git shas, the labelers and prompt versions, row counts and label balance.
`datasets.push_to_hub` later adds `dataset_info` to the same front matter and
keeps the rest.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from datasets import DatasetDict

from prm_data.export import DEFAULT_FORMAT, FEATURES, SPLITS, ExportConfig, counts_of
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
    from prm_data.pipeline.runs import git_sha

    params = {"policy": config.policy, "run_id": config.run_id}
    runs = warehouse.rows(load_query("card_runs"), params)
    for run in runs:
        raw = run.pop("config_json")
        run["config"] = json.loads(raw) if raw else None
    metadata = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "export_git_sha": git_sha(),
        "export_config": config.model_dump(mode="json"),
        "runs": runs,
        "labelers": warehouse.rows(load_query("card_labelers"), params),
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


def render_card(metadata: dict, config: ExportConfig, repo_id: str = "<user>/<dataset>") -> str:
    """README.md text: YAML front matter, then what each format and column means."""
    front = {
        "pretty_name": config.pretty_name,
        **({"license": config.license} if config.license else {}),
        "tags": ["process-reward-model", "prm", "step-level-supervision", "synthetic", "prm-data"],
        "configs": _configs_yaml(metadata["counts"]),
        "prm_data": metadata,
    }
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {config.pretty_name}", "",
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
              "- the full run configs are in the `prm_data` key of this card's YAML header", "",
              "## Train a PRM with TRL", "", TRL_SNIPPET.format(repo=repo_id), ""]
    lines += trainer_formats.card_markdown(metadata.get("trainer_formats", {}))
    return "\n".join(lines)
