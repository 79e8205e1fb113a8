"""The export configs for today's trainers: `rl_rewards`, `openrlhf`, `verifier_sft`.

TRL 1.14 removed its PRM trainer, so the `stepwise` config serves TRL <= 1.13 and
this project's trainer; these three serve the rest:

- `rl_rewards`: per rollout, a transform's step rewards and where each step ends in
  the response (characters, and tokens for a named tokenizer), for RL trainers that
  take dense step rewards (prm_data/exports/rl_rows.py);
- `openrlhf`: the Math-Shepherd layout OpenRLHF's `train_prm` reads (prm_data/exports/openrlhf.py);
- `verifier_sft`: chat conversations that teach a generative verifier to critique
  each step (prm_data/exports/verifier_sft.py).

All three are built from the `stepwise` rows of the same export (the same labelled
steps), so they agree with it row for row. `prm_data/export.py` dispatches here for
these names; `card_sections` gives each config's part of the dataset card.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from datasets import DatasetDict, Features, List, Value

from prm_data.exports.openrlhf import build_openrlhf_rows
from prm_data.exports.options import TRAINER_FORMATS, TrainerExportOptions
from prm_data.exports.rl_rows import build_rl_rows
from prm_data.exports.verifier_sft import MESSAGE, build_verifier_rows
from prm_data.schema import TABLES
from prm_data.steps import separator
from prm_data.warehouse import Warehouse


def _col(table: str, column: str):
    return Features.from_arrow_schema(pa.schema([TABLES[table].field(column)]))[column]


FEATURES: dict[str, Features] = {
    "rl_rewards": Features({
        "problem_id": _col("problems", "problem_id"),
        "rollout_id": _col("rollouts", "rollout_id"),
        "prompt": _col("problems", "question"),
        "response": Value("string"),
        "steps": List(_col("steps", "text")),
        "step_end_char": List(Value("int32")),
        "step_end_token": List(Value("int32")),
        "step_values": List(_col("final_labels", "value")),
        "step_rewards": List(Value("float64")),
        "outcome_reward": Value("float64"),
        "labels": List(_col("final_labels", "label")),
        "policy_model": _col("rollouts", "policy_model"),
    }),
    "openrlhf": Features({
        "problem_id": _col("problems", "problem_id"),
        "rollout_id": _col("rollouts", "rollout_id"),
        "input": Value("string"),
        "label": List(Value("string")),
        "soft_label": List(_col("final_labels", "value")),
        "is_correct": _col("rollouts", "is_correct"),
    }),
    "verifier_sft": Features({
        "problem_id": _col("problems", "problem_id"),
        "rollout_id": _col("rollouts", "rollout_id"),
        "critic": Value("string"),
        "messages": Features.from_arrow_schema(pa.schema([("m", pa.list_(MESSAGE))]))["m"],
        "step_verdicts": List(Value("bool")),
        "num_steps": Value("int32"),
    }),
}
FORMATS = TRAINER_FORMATS

COLUMN_DOCS: dict[str, dict[str, str]] = {
    "rl_rewards": {
        "problem_id": "id of the problem", "rollout_id": "id of the solution",
        "prompt": "the problem text",
        "response": "the steps joined by the step separator: the text the offsets refer to",
        "steps": "the labelled steps (as in the stepwise config)",
        "step_end_char": "per step, the character offset in `response` where the step ends (exclusive)",
        "step_end_token": "per step, the index of the response token holding the step's last character "
                          "(response tokenized alone, no special tokens); null without --tokenizer",
        "step_values": "per step, the soft label the rewards are computed from",
        "step_rewards": "per step, the chosen transform's reward (see the card's rl_rewards section)",
        "outcome_reward": "1.0 when the final answer is correct, else 0.0",
        "labels": "per step, the hard label", "policy_model": "the model that wrote the solution",
    },
    "openrlhf": {
        "problem_id": "id of the problem", "rollout_id": "id of the solution",
        "input": "question, then each step followed by the placeholder token (train_prm --input_key input)",
        "label": "per step, the positive or negative reward token (train_prm --label_key label)",
        "soft_label": "per step, the soft label (float labels; OpenRLHF 0.8.11's dataset cannot read them)",
        "is_correct": "whether the final answer is correct",
    },
    "verifier_sft": {
        "problem_id": "id of the problem", "rollout_id": "id of the solution",
        "critic": "where the critique's verdicts come from: judge:<name> or tool_verify",
        "messages": "system, user (problem and numbered steps) and assistant (the critique) messages",
        "step_verdicts": "the critique's verdict per step (all equal to the final labels: the filter)",
        "num_steps": "number of steps critiqued",
    },
}


@dataclass(frozen=True)
class TrainerFormatBuild:
    table: pa.Table  # the rows, with the columns of FEATURES[name]
    card: dict  # this config's provenance: parameters and what was left out, and why


Builder = Callable[[Warehouse, pa.Table, TrainerExportOptions, str], tuple[pa.Table, dict]]
BUILDERS: dict[str, Builder] = {
    "rl_rewards": lambda wh, sw, opt, policy: build_rl_rows(sw, opt.rewards, separator(policy), opt.tokenizer),
    "openrlhf": lambda wh, sw, opt, policy: build_openrlhf_rows(sw, opt.openrlhf),
    "verifier_sft": lambda wh, sw, opt, policy: build_verifier_rows(wh, sw),
}


def build_trainer_format(name: str, warehouse: Warehouse, stepwise: pa.Table, options: TrainerExportOptions,
                         step_policy: str) -> TrainerFormatBuild:
    """One trainer config's rows from the stepwise export's rows (`stepwise`: the whole table, before the split)."""
    table, card = BUILDERS[name](warehouse, stepwise, options, step_policy)
    return TrainerFormatBuild(table.select(list(FEATURES[name])).cast(FEATURES[name].arrow_schema), card)


def _balance(name: str, dsd: DatasetDict) -> dict:
    out = {}
    for split, ds in dsd.items():
        t = ds.data
        if name == "rl_rewards":
            rewards = pc.list_flatten(t.column("step_rewards"))
            out[split] = {"rollouts": t.num_rows, "steps": len(rewards),
                          "mean_step_reward": round(pc.mean(rewards).as_py() or 0.0, 4),
                          "outcome_correct": pc.sum(t.column("outcome_reward")).as_py() or 0}
        elif name == "openrlhf":
            labels = pc.list_flatten(t.column("label"))
            counts = {c["values"]: c["counts"] for c in pc.value_counts(labels).to_pylist()}
            out[split] = {"steps": len(labels), "labels": counts}
        else:
            verdicts = pc.list_flatten(t.column("step_verdicts"))
            positive = pc.sum(pc.cast(verdicts, pa.int64())).as_py() or 0
            out[split] = {"rows": t.num_rows, "steps": len(verdicts), "correct": positive,
                          "incorrect": len(verdicts) - positive}
    return out


def card_sections(datasets: dict[str, DatasetDict], builds: dict[str, dict]) -> dict:
    """Per trainer config in the export: its build's provenance and its label balance per split."""
    return {name: {**card, "label_balance": _balance(name, datasets[name]) if name in datasets else {}}
            for name, card in builds.items()}


SNIPPETS = {
    "rl_rewards": "Per rollout, put `step_rewards[i]` on response token `step_end_token[i]` (add the prompt's "
                  "token count when the trainer scores prompt + response), or locate it with `step_end_char[i]`.",
    "openrlhf": "`python -m openrlhf.cli.train_prm --dataset <repo> --dataset_split train {flags}` "
                "(openrlhf <= 0.8.11: train_prm was removed in 0.9.0).",
    "verifier_sft": "`messages` is the chat format SFT trainers (TRL's SFTTrainer, OpenRLHF's train_sft "
                    "with --apply_chat_template --input_key messages) read directly.",
}


def card_markdown(sections: dict) -> list[str]:
    """The dataset card's lines about the trainer configs: how to use each, its parameters and what was left out."""
    lines = []
    for name, section in sections.items():
        body = {k: v for k, v in section.items() if k != "label_balance"}
        lines += [f"## `{name}`", "", SNIPPETS[name].format(flags=section.get("train_prm_flags", "")), "",
                  "```json", json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False), "```", ""]
    return lines
