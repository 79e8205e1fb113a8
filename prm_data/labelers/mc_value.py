"""Monte Carlo step values (Math-Shepherd, Wang et al., arXiv 2312.08935).

For each step prefix of a rollout, `k` completions are sampled from the
completer policy and graded against the gold answer. Math-Shepherd keeps two
estimates of the prefix's quality, both stored here:

- hard estimate (HE): the step is good if any completion reaches the gold answer;
- soft estimate (SE): the fraction of completions that do.

What a completion counts (`outcome`): "hard" (the default, Math-Shepherd's) counts
1 when its whole solution succeeds (the problem's verifier says correct) and 0
otherwise; "soft" counts the verifier's score instead, so for code a completion
that passes 7 of 10 unit tests counts 0.7 (partial credit; for math the score is
0 or 1 and both modes agree). Soft changes SE (`value`) only: HE stays "some
completion succeeded". Every label's evidence names the verifier (`verifier`,
`name@version`) that decided its completions.

The paper samples N = 8 completions per step (`k`). Two cost savers, each off
or on by config and reported separately by `benchmarks/labeling_cost.py`:

- tree reuse: completions already counted at the prefix node (the rollout
  itself, other rollouts sharing the prefix, earlier labelers, a reloaded tree)
  are used and only the missing ones are drawn; identical prefixes of several
  rollouts are estimated once;
- early stopping (hard labels only): completions are drawn in small chunks and
  drawing stops at the first success, since one success settles HE; the samples
  not drawn and their estimated tokens are recorded in the label's evidence
  (the soft value of an early-stopped step rests on fewer samples).

The last step of a rollout that states a final answer is a complete solution:
its only completion is itself, so Math-Shepherd's estimate of it is the
correctness of that answer. With `terminal_outcome` (off by default) it gets
exactly that (value 1 or 0 from the rollout's own grade, nothing sampled)
instead of `k` continuations sampled after the solution ended: a small
completer continues a finished "... = 21. The answer is \\boxed{21}." with the
steps the rollout left out and reaches the gold answer, so a step that stops
short with a wrong final answer came out good (Qwen2.5-Coder-0.5B, docs/models.md).

Inputs: `RolloutSteps` (prm_data/rollouts.py). Output: one `StepLabel` per step
with value = SE, hard_label = HE, confidence = 1 - Wilson interval width, and the
tokens and calls spent on that step (a node shared by several rollouts is paid
once, by the first of them).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prm_data.answers import extract_answer
from prm_data.records import StepLabels, wilson_confidence
from prm_data.rollouts import RolloutSteps
from prm_data.steps import join_steps
from prm_data.trees.prefix_tree import prefix_node_ids
from prm_data.trees.sampling import (ESTIMATE_EVIDENCE, Completer, Estimate, ask_for, drive, labeler_version,
                                     mc_estimate)

NAME = "mc_value"
CODE_VERSION = "v1"
EVIDENCE = {**ESTIMATE_EVIDENCE, "soft_estimate": pa.float64(), "hard_estimate": pa.bool_(), "k": pa.int64(),
            "shared_estimate": pa.bool_(), "completer_model": pa.string(), "terminal": pa.bool_(),
            "mc_score": pa.float64(), "outcome": pa.string(), "verifier": pa.string()}


class MCValueConfig(BaseModel):
    """Math-Shepherd Monte Carlo estimation settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(8, ge=1, description="Completions per step prefix (Math-Shepherd: N = 8).")
    reuse_tree: bool = Field(
        True, description="Count completions the prefix tree already holds and draw only the missing "
                          "ones; identical prefixes are estimated once.")
    early_stop: bool = Field(
        False, description="For hard labels: draw in chunks and stop at the first success.")
    chunk_size: int = Field(2, ge=1, description="Completions per request when early stopping.")
    terminal_outcome: bool = Field(
        False, description="Value the last step of a rollout that states a final answer by that answer's "
                           "correctness (its only completion is the rollout itself) instead of sampling `k` "
                           "continuations after the solution ended.")
    outcome: Literal["hard", "soft"] = Field(
        "hard", description="What a completion counts in the value: 'hard' 1 if its solution succeeds, else 0 "
                            "(Math-Shepherd); 'soft' the verifier's score in [0, 1] (code: the share of unit "
                            "tests passed). The hard estimate (hard_label) is the same in both.")


def is_terminal(rollout: RolloutSteps, step_index: int, step_policy: str = "blank_line") -> bool:
    """Whether step `step_index` ends a graded rollout that states a final answer (a complete solution).

    A problem graded by another verifier than math (code, exact, choice) has no "final answer" to
    look for: the last step of a graded rollout of it is the end of the solution its verifier judged."""
    if step_index != len(rollout.steps) - 1 or rollout.is_correct is None:
        return False
    if rollout.outcome_spec is not None and rollout.outcome_spec.verifier != "math":
        return True
    return extract_answer(join_steps(list(rollout.steps), step_policy)) is not None


def label_mc_value(rollouts: Sequence[RolloutSteps], completer: Completer,
                   cfg: MCValueConfig = MCValueConfig()) -> StepLabels:
    """Label every step of every rollout with its Monte Carlo value."""
    completer.add_rollouts(rollouts)
    items = [(r, i) for r in rollouts for i in range(len(r.steps))]
    keys = [nid for r in rollouts for nid in prefix_node_ids(r.problem_id, r.steps)]
    policy = completer.cfg.step_policy
    terminal = {j for j, (r, i) in enumerate(items) if cfg.terminal_outcome and is_terminal(r, i, policy)}
    if cfg.reuse_tree:  # one estimate per distinct prefix node
        first_of: dict[str, int] = {}
        for j, key in enumerate(keys):
            if j not in terminal:
                first_of.setdefault(key, j)
        owners = list(first_of.values())
    else:
        owners = [j for j in range(len(items)) if j not in terminal]
    asks = {j: ask_for(items[j][0], items[j][1] + 1, cfg.k) for j in range(len(items))}
    tasks = [mc_estimate(completer, asks[j], cfg.k,
                         reuse=cfg.reuse_tree, early_stop=cfg.early_stop, chunk_size=cfg.chunk_size)
             for j in owners]
    estimates = dict(zip(owners, drive(completer, tasks, NAME)))
    by_key = {keys[j]: estimates[j] for j in owners}
    version = labeler_version(CODE_VERSION, cfg)
    labels = StepLabels(NAME, version, EVIDENCE)
    for j, (r, i) in enumerate(items):
        verifier = completer.verifier_tag(asks[j])
        if j in terminal:
            _add_terminal_label(labels, r, i, keys[j], completer.model, cfg.outcome, verifier)
            continue
        est: Estimate = estimates.get(j) or by_key[keys[j]]
        paid = j in estimates
        if est.samples == 0:
            completer.failures.record(f"label:{NAME}", "no completion could be sampled for this step "
                                      "prefix; the step is left unlabeled", item_id=f"{r.rollout_id}:{i}")
            continue
        value = est.soft_value if cfg.outcome == "soft" else est.value
        labels.add(
            problem_id=r.problem_id, rollout_id=r.rollout_id, step_index=i, value=value, hard_label=est.successes > 0,
            confidence=wilson_confidence(est.successes, est.samples),
            prompt_tokens=est.prompt_tokens if paid else 0,
            completion_tokens=est.completion_tokens if paid else 0,
            calls=est.calls if paid else 0,
            evidence={**est.evidence(), "soft_estimate": value, "hard_estimate": est.successes > 0,
                      "k": cfg.k, "shared_estimate": not paid, "completer_model": completer.model,
                      "terminal": False, "mc_score": est.score_sum, "outcome": cfg.outcome, "verifier": verifier})
    return labels


def _add_terminal_label(labels: StepLabels, r: RolloutSteps, i: int, node_id: str, completer_model: str,
                        outcome: str, verifier: str) -> None:
    """The last step of a complete solution: valued by the rollout's own graded answer, nothing sampled."""
    ok = bool(r.is_correct)
    score = float(ok) if r.score is None else float(r.score)
    value = score if outcome == "soft" else float(ok)
    labels.add(
        problem_id=r.problem_id, rollout_id=r.rollout_id, step_index=i, value=value, hard_label=ok,
        confidence=wilson_confidence(int(ok), 1), prompt_tokens=0, completion_tokens=0, calls=0,
        evidence={"node_id": node_id, "terminal": True, "mc_successes": int(ok), "mc_samples": 1,
                  "new_samples": 0, "reused_samples": 1, "early_stopped": False, "samples_saved": 0,
                  "est_completion_tokens_saved": 0, "soft_estimate": value, "hard_estimate": ok,
                  "k": 0, "shared_estimate": False, "completer_model": completer_model, "mc_score": score,
                  "outcome": outcome, "verifier": verifier})
