"""Fuse the labelers' step labels into one final label per step, by a named policy.

Input: `StepLabel`s (or `step_labels` rows) of a set of rollouts, from any
registered labeler. Output: rows of `final_labels` — label, soft value, the
labelers that decided (`sources`), and `kept` / `drop_reason`, so a dropped
rollout stays queryable.

A policy reads roles, not labeler names: each labeler's registry entry
(prm_data/labelers/registry.py) says whether its labels are an `mc` signal
(mc_value, omega_prm, progress, sibling, ...), a `judge` signal (judge_vote,
rubric) or a `tool` check. Per step, the labels of one role are fused into one
signal: its label is the weighted vote of its labelers' labels (good when the
good share reaches 1/2), its score the weighted mean of their scores (a
`probability` value as it is, an `advantage` labeler's hard label as 0/1);
weights are `labeler_weights` (default 1). With one labeler per role this is
that labeler's label and value.

Policies:

- `consensus` — Qwen2.5-Math-PRM (Zhang et al., "The Lessons of Developing
  Process Reward Models in Mathematical Reasoning", arXiv:2501.07301): keep a
  rollout only where the Monte Carlo first error and the judges' first error
  agree (both "no error" included); its labels are then good before that step
  and bad from it on — except that a step the tools veto is bad anyway.
- `hybrid` — GroundedPRM (arXiv:2510.14942): a tool veto makes a step bad
  whatever the rest says; otherwise the step's score is the weighted mean of
  the MC signal and the judges' signal (weights in config), good when it
  reaches `hybrid_threshold`.
- `mc_only` — the MC signal as it is (Math-Shepherd hard estimate by default,
  arXiv:2312.08935).
- `judge_only` — the judges' signal.

A tool veto is a tool label with hard_label False and confidence at least
`tool_veto_confidence` (default 1.0: only a claim the tool parsed exactly and
fully and found wrong; a heuristic contradiction is reported by the tool labeler
with a lower confidence and vetoes nothing).

`check_labelers` refuses, at config load, a policy that cannot decide a step
with the configured labelers, or that would never read some of their labels
(paid for and dropped), with the fix spelled out.

With `propagate_errors` (the ProcessBench convention, arXiv:2412.06559) every
step after the first bad one (a vetoed one included) is bad too; such labels list `propagated` among
their sources. A rollout with a step no source can decide is dropped whole
(PRM training needs every step labeled), with the reason.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prm_data.labelers.registry import ROLES, spec, with_role
from prm_data.records import StepLabel

Policy = Literal["consensus", "hybrid", "mc_only", "judge_only"]
POLICIES: tuple[str, ...] = ("consensus", "hybrid", "mc_only", "judge_only")


class AggregateConfig(BaseModel):
    """Which policy fuses the labels, and its knobs (defaults follow the cited papers)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: Policy = Field("consensus", description="consensus | hybrid | mc_only | judge_only.")
    labeler_weights: dict[str, float] = Field(
        default_factory=dict, description="Weight of a labeler inside its role's fused signal (default 1).")
    mc_signal: Literal["hard", "soft"] = Field(
        "hard", description="consensus/mc_only: MC label = hard estimate (any completion correct, "
                            "Math-Shepherd HE) or soft value >= mc_threshold.")
    mc_threshold: float = Field(0.5, ge=0, le=1, description="Soft MC value at which a step counts as good.")
    hybrid_mc_signal: Literal["hard", "soft"] = Field(
        "soft", description="hybrid: fuse the MC score (success rate) or the MC label as 0/1.")
    mc_weight: float = Field(0.5, ge=0, description="hybrid: weight of the MC signal.")
    judge_weight: float = Field(0.5, ge=0, description="hybrid: weight of the judges' signal.")
    hybrid_threshold: float = Field(0.5, ge=0, le=1, description="hybrid: fused score at which a step is good.")
    tool_override: bool = Field(
        True, description="hybrid and consensus: a step a tool vetoes is bad whatever the rest says.")
    tool_veto_confidence: float = Field(
        1.0, ge=0, le=1, description="Least confidence of a tool contradiction that vetoes a step (1.0: "
                                     "only claims the tool parsed exactly and fully).")
    propagate_errors: bool = Field(True, description="Every step after the first bad step is bad.")

    @property
    def weight(self) -> Callable[[str], float]:
        return lambda name: self.labeler_weights.get(name, 1.0)


# ------------------------------------------------------------------- policies: what each reads
@dataclass(frozen=True)
class PolicySpec:
    decide: Callable  # (steps: {labeler: {step: row}}, n, roles: {role: [labeler]}, config) -> Decided
    needs_all: tuple[str, ...]  # roles without which no step can be decided
    needs_any: tuple[str, ...] = ()  # at least one of these roles

    def uses(self, name: str, config: AggregateConfig) -> set[str]:
        """The roles whose labels this policy reads under `config`."""
        if name == "hybrid":
            used = {r for r, w in (("mc", config.mc_weight), ("judge", config.judge_weight)) if w > 0}
        else:
            used = set(self.needs_all)
        if name in ("consensus", "hybrid") and config.tool_override:
            used.add("tool")
        return used


def _problems(policy: str, config: AggregateConfig, labelers: Sequence[str]) -> tuple[list[str], list[str]]:
    """(roles the policy needs but has no labeler for, labelers whose labels it never reads)."""
    p = _POLICIES[policy]
    have = {spec(n).role for n in labelers}
    used = p.uses(policy, config)
    missing = [r for r in p.needs_all if r not in have]
    if p.needs_any and not have & (set(p.needs_any) & used):
        missing.append(" or ".join(r for r in p.needs_any if r in used))
    unused = [n for n in labelers if spec(n).role not in used]
    return missing, unused


def check_labelers(config: AggregateConfig, labelers: Sequence[str]) -> None:
    """ValueError, with the fix, if `config.policy` cannot use exactly these labelers.

    Refused: a policy that lacks a role it needs (every rollout would be dropped
    after its labels were paid for), and labelers whose role the policy never
    reads (their labels would be paid for and ignored).
    """
    missing, unused = _problems(config.policy, config, labelers)
    if not missing and not unused:
        return
    fits = [p for p in POLICIES if _problems(p, config, labelers) == ([], [])]
    instead = f"set aggregate.policy to {' or '.join(fits)}" if fits else "choose labelers a policy can fuse"
    if missing:
        wanted = "; ".join(f"labels of role {r} ({', '.join(_names_of(r))})" for r in missing)
        raise ValueError(f"aggregate.policy {config.policy} needs {wanted}, and labeling.labelers "
                         f"{list(labelers)} has none: every rollout would be dropped after its labels were paid "
                         f"for. Fix: add one to labeling.labelers, or {instead}.")
    raise ValueError(f"aggregate.policy {config.policy} never reads the labels of {unused} (role "
                     f"{', '.join(sorted({spec(n).role for n in unused}))}): they would be paid for and ignored. "
                     f"Fix: remove them from labeling.labelers, or {instead}.")


def _names_of(role_text: str) -> list[str]:
    return [n for r in role_text.split(" or ") for n in with_role(r)]


def aggregate(labels: Iterable[StepLabel | Mapping], config: AggregateConfig, run_id: str,
              num_steps: Mapping[str, int] | None = None, labelers: Sequence[str] | None = None) -> list[dict]:
    """`final_labels` rows for every rollout that has labels (and every rollout in `num_steps`).

    `num_steps` (rollout_id -> step count) lets a rollout whose last steps no
    labeler reached be dropped instead of silently shortened. `labelers` are the
    run's configured labelers (default: those the labels come from); each one's
    role comes from the registry, and an unregistered labeler is a KeyError.
    """
    table: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    problem_of: dict[str, str] = {}
    seen: dict[str, None] = {}
    for raw in labels:
        row = _as_row(raw)
        table[row["rollout_id"]][row["labeler"]][int(row["step_index"])] = row
        problem_of[row["rollout_id"]] = row["problem_id"]
        seen.setdefault(row["labeler"], None)
    names = list(labelers) if labelers is not None else list(seen)
    roles = {role: [n for n in names if spec(n).role == role] for role in ROLES}
    out: list[dict] = []
    for rid in sorted(set(table) | set(num_steps or {})):
        by_labeler = table.get(rid, {})
        n = (num_steps or {}).get(rid)
        if n is None:
            n = 1 + max(i for steps in by_labeler.values() for i in steps)
        decided = _POLICIES[config.policy].decide(by_labeler, n, roles, config)
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
@dataclass(frozen=True)
class Signal:
    """One role's fused reading of one step."""

    label: bool | None
    score: float | None
    sources: tuple[str, ...]


def _hard(row: dict, role: str) -> bool | None:
    """A label's hard verdict; an MC label without one: "some completion succeeded" (Math-Shepherd HE)."""
    if row.get("hard_label") is not None:
        return bool(row["hard_label"])
    if role == "mc" and row.get("value") is not None:
        return row["value"] > 0
    return None


def role_signal(by_labeler: Mapping[str, Mapping[int, dict]], step: int, names: Sequence[str],
                config: AggregateConfig, soft: bool = False) -> Signal:
    """The weighted vote (label) and weighted mean (score) of the role's labelers at `step`.

    `soft`: a `probability` labeler's label is value >= mc_threshold instead of its hard label.
    """
    votes = []
    for name in names:
        row = by_labeler.get(name, {}).get(step)
        if row is None:
            continue
        s = spec(name)
        hard = _hard(row, s.role)
        prob = s.value == "probability" and row.get("value") is not None
        label = row["value"] >= config.mc_threshold if soft and prob else hard
        if label is None:
            continue  # an abstention
        votes.append((name, config.weight(name), label, float(row["value"]) if prob else float(label)))
    total = sum(w for _, w, _, _ in votes)
    if not votes or total <= 0:
        return Signal(None, None, ())
    good = sum(w for _, w, label, _ in votes if label) / total
    score = sum(w * s for _, w, _, s in votes) / total
    return Signal(good >= 0.5, score, tuple(n for n, _, _, _ in votes))


def vetoed(by_labeler, step: int, tools: Sequence[str], config: AggregateConfig) -> str | None:
    """The tool labeler that vetoes `step` (a contradiction at >= tool_veto_confidence), or None."""
    for name in tools:
        row = by_labeler.get(name, {}).get(step)
        if row is not None and row.get("hard_label") is False and \
                float(row.get("confidence") or 0.0) >= config.tool_veto_confidence:
            return name
    return None


def _first_error(labels: list[bool | None]) -> int:
    return next((i for i, l in enumerate(labels) if l is False), -1)


# A policy returns (labels, values, sources per step, drop reason or None).
Decided = tuple[list, list, list, str | None]


def _single(by_labeler, n, role, roles, config, soft: bool) -> Decided:
    names = roles[role]
    signals = [role_signal(by_labeler, i, names, config, soft) for i in range(n)]
    missing = [i for i, s in enumerate(signals) if s.label is None]
    reason = f"{'/'.join(names) or role}: no label for step(s) {missing}" if missing else None
    return ([s.label for s in signals], [s.score for s in signals],
            [list(s.sources) or list(names) for s in signals], reason)


def _mc_only(by_labeler, n, roles, config) -> Decided:
    return _single(by_labeler, n, "mc", roles, config, config.mc_signal == "soft")


def _judge_only(by_labeler, n, roles, config) -> Decided:
    return _single(by_labeler, n, "judge", roles, config, False)


def _consensus(by_labeler, n, roles, config) -> Decided:
    mc_labels, values, mc_sources, mc_missing = _mc_only(by_labeler, n, roles, config)
    judge_labels, _, judge_sources, judge_missing = _judge_only(by_labeler, n, roles, config)
    sources = [m + j for m, j in zip(mc_sources, judge_sources)]
    if mc_missing or judge_missing:
        return mc_labels, values, sources, "; ".join(r for r in (mc_missing, judge_missing) if r)
    mc_fe, judge_fe = _first_error(mc_labels), _first_error(judge_labels)
    labels = [mc_fe == -1 or i < mc_fe for i in range(n)]
    if mc_fe != judge_fe:
        return labels, values, sources, f"consensus: MC first error {mc_fe} != judges' first error {judge_fe}"
    if config.tool_override:  # a step the tools prove wrong is wrong, even if both missed it
        for i in range(n):
            tool = vetoed(by_labeler, i, roles["tool"], config)
            if tool and labels[i]:
                labels[i], values[i], sources[i] = False, 0.0, [tool]
    return labels, values, sources, None


def _hybrid(by_labeler, n, roles, config) -> Decided:
    labels, values, sources, undecided = [], [], [], []
    for i in range(n):
        tool = vetoed(by_labeler, i, roles["tool"], config) if config.tool_override else None
        if tool:
            labels.append(False)
            values.append(0.0)
            sources.append([tool])
            continue
        parts = []
        mc = role_signal(by_labeler, i, roles["mc"], config)
        if mc.label is not None and config.mc_weight > 0:
            parts.append((mc.sources, config.mc_weight,
                          mc.score if config.hybrid_mc_signal == "soft" else float(mc.label)))
        judge = role_signal(by_labeler, i, roles["judge"], config)
        if judge.label is not None and config.judge_weight > 0:
            parts.append((judge.sources, config.judge_weight, judge.score))
        if not parts:
            labels.append(None)
            values.append(None)
            sources.append([])
            undecided.append(i)
            continue
        score = sum(w * s for _, w, s in parts) / sum(w for _, w, _ in parts)
        labels.append(score >= config.hybrid_threshold)
        values.append(score)
        sources.append([name for names, _, _ in parts for name in names])
    reason = f"hybrid: no source decides step(s) {undecided}" if undecided else None
    return labels, values, sources, reason


_POLICIES: dict[str, PolicySpec] = {
    "consensus": PolicySpec(_consensus, needs_all=("mc", "judge")),
    "hybrid": PolicySpec(_hybrid, needs_all=(), needs_any=("mc", "judge")),
    "mc_only": PolicySpec(_mc_only, needs_all=("mc",)),
    "judge_only": PolicySpec(_judge_only, needs_all=("judge",)),
}


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
