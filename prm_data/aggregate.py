"""Fuse the labelers' step labels into one final label per step, by a named policy.

Input: `StepLabel`s (or `step_labels` rows) of a set of rollouts, from any of
the labelers (`mc_value`, `judge_vote`, `tool_verify`, ...). Output: rows of
`final_labels` — label, soft value, the labelers that decided (`sources`),
and `kept` / `drop_reason`, so a dropped rollout stays queryable.

Policies:

- `consensus` — Qwen2.5-Math-PRM (Zhang et al., "The Lessons of Developing
  Process Reward Models in Mathematical Reasoning", arXiv:2501.07301): keep a
  rollout only where the Monte Carlo first error and the judges' first error
  agree (both "no error" included); its labels are then good before that step
  and bad from it on — except that a step the tools contradict is bad anyway.
- `hybrid` — GroundedPRM (arXiv:2510.14942): a tool contradiction makes a step
  bad whatever the rest says; otherwise the step's score is the weighted mean of
  the Monte Carlo signal and the judges' vote share (weights in config), good
  when it reaches `hybrid_threshold`.
- `mc_only` — the Monte Carlo labels as they are (Math-Shepherd hard estimate
  by default, arXiv:2312.08935).
- `judge_only` — the judges' majority.

With `propagate_errors` (the ProcessBench convention, arXiv:2412.06559) every
step after the first bad one is bad too; such labels list `propagated` among
their sources. A rollout with a step no source can decide is dropped whole
(PRM training needs every step labeled), with the reason.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, is_dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prm_data.records import StepLabel

Policy = Literal["consensus", "hybrid", "mc_only", "judge_only"]
POLICIES: tuple[str, ...] = ("consensus", "hybrid", "mc_only", "judge_only")


class AggregateConfig(BaseModel):
    """Which policy fuses the labels, and its knobs (defaults follow the cited papers)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: Policy = Field("consensus", description="consensus | hybrid | mc_only | judge_only.")
    mc_labeler: str = Field("mc_value", description="step_labels.labeler of the Monte Carlo labels.")
    judge_labeler: str = Field("judge_vote", description="step_labels.labeler of the judge labels.")
    tool_labeler: str = Field("tool_verify", description="step_labels.labeler of the tool labels.")
    mc_signal: Literal["hard", "soft"] = Field(
        "hard", description="consensus/mc_only: MC label = hard estimate (any completion correct, "
                            "Math-Shepherd HE) or soft value >= mc_threshold.")
    mc_threshold: float = Field(0.5, ge=0, le=1, description="Soft MC value at which a step counts as good.")
    hybrid_mc_signal: Literal["hard", "soft"] = Field(
        "soft", description="hybrid: fuse the soft MC value (success rate) or the hard estimate as 0/1.")
    mc_weight: float = Field(0.5, ge=0, description="hybrid: weight of the MC signal.")
    judge_weight: float = Field(0.5, ge=0, description="hybrid: weight of the judges' vote share.")
    hybrid_threshold: float = Field(0.5, ge=0, le=1, description="hybrid: fused score at which a step is good.")
    tool_override: bool = Field(
        True, description="hybrid and consensus: a step the tool labeler contradicts is bad whatever the rest says.")
    propagate_errors: bool = Field(True, description="Every step after the first bad step is bad.")


def aggregate(labels: Iterable[StepLabel | Mapping], config: AggregateConfig, run_id: str,
              num_steps: Mapping[str, int] | None = None) -> list[dict]:
    """`final_labels` rows for every rollout that has labels (and every rollout in `num_steps`).

    `num_steps` (rollout_id -> step count) lets a rollout whose last steps no
    labeler reached be dropped instead of silently shortened.
    """
    table: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    problem_of: dict[str, str] = {}
    for raw in labels:
        row = _as_row(raw)
        table[row["rollout_id"]][row["labeler"]][int(row["step_index"])] = row
        problem_of[row["rollout_id"]] = row["problem_id"]
    out: list[dict] = []
    for rid in sorted(set(table) | set(num_steps or {})):
        by_labeler = table.get(rid, {})
        n = (num_steps or {}).get(rid)
        if n is None:
            n = 1 + max(i for steps in by_labeler.values() for i in steps)
        decided = _POLICY_FUNCS[config.policy](by_labeler, n, config)
        out.extend(_rows(run_id, problem_of.get(rid, ""), rid, config, decided, n))
    return out


def _as_row(raw) -> dict:
    if isinstance(raw, StepLabel) or is_dataclass(raw):
        return asdict(raw)
    row = dict(raw)
    if isinstance(row.get("evidence"), str):
        row["evidence"] = json.loads(row["evidence"] or "{}")
    return row


# ------------------------------------------------------------------- signals
def _hard_mc(row: dict | None) -> bool | None:
    """Math-Shepherd hard estimate: the labeler's hard label, else "some completion succeeded"."""
    if row is None:
        return None
    if row.get("hard_label") is not None:
        return bool(row["hard_label"])
    return None if row.get("value") is None else row["value"] > 0


def _mc_label(row: dict | None, config: AggregateConfig) -> bool | None:
    if config.mc_signal == "hard" or row is None:
        return _hard_mc(row)
    return None if row.get("value") is None else row["value"] >= config.mc_threshold


def _judge_label(row: dict | None) -> bool | None:
    return None if row is None or row.get("hard_label") is None else bool(row["hard_label"])


def _first_error(labels: list[bool | None]) -> int:
    return next((i for i, l in enumerate(labels) if l is False), -1)


# A policy returns (labels, values, sources per step, drop reason or None).
Decided = tuple[list, list, list, str | None]


def _single(by_labeler, n, config, name: str, read) -> Decided:
    rows = by_labeler.get(name, {})
    labels = [read(rows.get(i)) for i in range(n)]
    values = [rows[i].get("value") if i in rows else None for i in range(n)]
    missing = [i for i, l in enumerate(labels) if l is None]
    reason = f"{name}: no label for step(s) {missing}" if missing else None
    return labels, values, [[name] for _ in range(n)], reason


def _mc_only(by_labeler, n, config) -> Decided:
    return _single(by_labeler, n, config, config.mc_labeler, lambda r: _mc_label(r, config))


def _judge_only(by_labeler, n, config) -> Decided:
    return _single(by_labeler, n, config, config.judge_labeler, _judge_label)


def _consensus(by_labeler, n, config) -> Decided:
    mc_labels, values, _, mc_missing = _mc_only(by_labeler, n, config)
    judge_labels, _, _, judge_missing = _judge_only(by_labeler, n, config)
    sources = [[config.mc_labeler, config.judge_labeler] for _ in range(n)]
    if mc_missing or judge_missing:
        return mc_labels, values, sources, "; ".join(r for r in (mc_missing, judge_missing) if r)
    mc_fe, judge_fe = _first_error(mc_labels), _first_error(judge_labels)
    labels = [mc_fe == -1 or i < mc_fe for i in range(n)]
    if mc_fe != judge_fe:
        return labels, values, sources, f"consensus: MC first error {mc_fe} != judges' first error {judge_fe}"
    if config.tool_override:  # a step the tools prove wrong is wrong, even if both missed it
        tool_rows = by_labeler.get(config.tool_labeler, {})
        for i in range(n):
            if tool_rows.get(i, {}).get("hard_label") is False and labels[i]:
                labels[i], values[i], sources[i] = False, 0.0, [config.tool_labeler]
    return labels, values, sources, None


def _hybrid(by_labeler, n, config) -> Decided:
    mc_rows = by_labeler.get(config.mc_labeler, {})
    judge_rows = by_labeler.get(config.judge_labeler, {})
    tool_rows = by_labeler.get(config.tool_labeler, {})
    labels, values, sources, undecided = [], [], [], []
    for i in range(n):
        tool = tool_rows.get(i)
        if config.tool_override and tool is not None and tool.get("hard_label") is False:
            labels.append(False)
            values.append(0.0)
            sources.append([config.tool_labeler])
            continue
        parts = []
        mc_row = mc_rows.get(i)
        if mc_row is not None and config.mc_weight > 0:
            hard = _hard_mc(mc_row)
            if config.hybrid_mc_signal == "soft" and mc_row.get("value") is not None:
                parts.append((config.mc_labeler, config.mc_weight, float(mc_row["value"])))
            elif hard is not None:
                parts.append((config.mc_labeler, config.mc_weight, float(hard)))
        judge = judge_rows.get(i)
        if judge is not None and judge.get("value") is not None and config.judge_weight > 0:
            parts.append((config.judge_labeler, config.judge_weight, float(judge["value"])))
        if not parts:
            labels.append(None)
            values.append(None)
            sources.append([])
            undecided.append(i)
            continue
        score = sum(w * s for _, w, s in parts) / sum(w for _, w, _ in parts)
        labels.append(score >= config.hybrid_threshold)
        values.append(score)
        sources.append([name for name, _, _ in parts])
    reason = f"hybrid: no source decides step(s) {undecided}" if undecided else None
    return labels, values, sources, reason


_POLICY_FUNCS = {"consensus": _consensus, "hybrid": _hybrid, "mc_only": _mc_only, "judge_only": _judge_only}


def _rows(run_id: str, problem_id: str, rollout_id: str, config: AggregateConfig, decided: Decided,
          n: int) -> list[dict]:
    labels, values, sources, reason = decided
    labels, sources = list(labels), [list(s) for s in sources]
    if config.propagate_errors and reason is None:
        first = _first_error(labels)
        if first >= 0:
            for i in range(first + 1, n):
                if labels[i] is not False:
                    labels[i] = False
                    sources[i].append("propagated")
    return [{"run_id": run_id, "problem_id": problem_id, "rollout_id": rollout_id, "step_index": i,
             "policy": config.policy, "label": labels[i], "value": values[i], "sources": sources[i],
             "kept": reason is None, "drop_reason": reason} for i in range(n)]


def first_errors(final_rows: Iterable[Mapping], kept_only: bool = True) -> dict[str, int]:
    """rollout_id -> first bad step (-1 none) of `final_labels` rows."""
    steps: dict[str, dict[int, bool | None]] = defaultdict(dict)
    for r in final_rows:
        if kept_only and not r["kept"]:
            continue
        steps[r["rollout_id"]][int(r["step_index"])] = r["label"]
    return {rid: _first_error([s[i] for i in sorted(s)]) for rid, s in steps.items()}
