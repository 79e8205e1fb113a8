"""Progress labels: step advantages under a prover policy (Rewarding Progress).

Setlur et al., "Rewarding Progress: Scaling Automated Process Verifiers for LLM
Reasoning", arXiv 2410.08146.

A step is worth the change it makes in the chance that a *prover* policy mu
finishes the solution correctly:

    A(step_i) = Q_mu(prefix + step_i) - Q_mu(prefix)

where Q_mu(prefix) is the Monte Carlo success rate of completions sampled from
the prover continuing the prefix (Q_mu of the empty prefix is the prover's
success rate on the question). The paper shows that a prover distinct from the
policy that wrote the rollout (complementary, somewhat stronger) gives the most
useful advantages; so the prover has its own `Completer` (its own client,
backend and model, and its own prefix tree), and `ProgressConfig` names the
prover it expects. The rollouts enter the prover's tree as structure only
unless the prover is the policy itself (its samples would not be the prover's).

Each step gets value = A (in [-1, 1]) and confidence = the smaller of the two
estimates' Wilson confidences. Its hard label depends on `label_mode`:

- `advantage` (the paper's point): the step is bad when it lowers the
  prover's success probability beyond noise: a one-sided two-proportion
  z-test (pooled) of Q_mu(prefix + step) < Q_mu(prefix) on the two estimates'
  sample counts has p-value below `alpha`. Otherwise the step is good (it is
  not shown to lower the prover's chances; a step after an error, from a
  prefix the prover can no longer finish, is therefore good, with advantage 0).
  The test needs successes before the step to see a drop, so a prover too weak
  for a problem finds fewer errors, but it does not call good steps bad.
- `hard_estimate`: hard_label = Q_mu(prefix + step) > 0, the Math-Shepherd
  hard estimate under the prover (a weak prover calls good steps bad).

Identical prefixes are estimated once, and every completion feeds the prover's tree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prm_data.records import StepLabel, wilson_confidence
from prm_data.rollouts import RolloutSteps
from prm_data.trees.prefix_tree import node_id_for, prefix_node_ids
from prm_data.trees.sampling import Completer, Estimate, ask_for, drive, labeler_version, mc_estimate

NAME = "progress"
CODE_VERSION = "v2"


class ProgressConfig(BaseModel):
    """Rewarding Progress settings: the prover and its Monte Carlo budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(8, ge=1, description="Prover completions per prefix for Q_mu.")
    prover_model: str | None = Field(
        None, description="Model of the prover; may differ from the policy. None: not checked.")
    label_mode: Literal["advantage", "hard_estimate"] = Field(
        "advantage", description="advantage: bad when the step lowers the prover's success rate beyond noise "
                                 "(one-sided two-proportion test at `alpha`); hard_estimate: bad when no prover "
                                 "completion after the step succeeds (Math-Shepherd's hard estimate).")
    alpha: float = Field(0.05, gt=0.0, lt=1.0,
                         description="advantage mode: one-sided significance level of a drop in success rate.")


def drop_p_value(successes_before: int, samples_before: int, successes_after: int, samples_after: int) -> float:
    """One-sided p-value of "the success rate after is lower than before" (pooled two-proportion z-test).

    1.0 when the samples carry no evidence (no samples, or both rates 0 or both 1).
    """
    if samples_before == 0 or samples_after == 0:
        return 1.0
    pooled = (successes_before + successes_after) / (samples_before + samples_after)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / samples_before + 1.0 / samples_after))
    if se == 0.0:
        return 1.0
    z = (successes_before / samples_before - successes_after / samples_after) / se
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def label_progress(rollouts: Sequence[RolloutSteps], prover: Completer,
                   cfg: ProgressConfig = ProgressConfig()) -> list[StepLabel]:
    """Label every step with its advantage under the prover."""
    if cfg.prover_model is not None and prover.model != cfg.prover_model:
        raise ValueError(f"progress labels expect prover model {cfg.prover_model!r}, got {prover.model!r}")
    prover.add_rollouts(rollouts)
    # node key of every prefix length j = 0..m of every rollout; one estimate per distinct key
    keys = {r.rollout_id: [node_id_for(r.problem_id, [])] + prefix_node_ids(r.problem_id, r.steps)
            for r in rollouts}
    owner: dict[str, tuple[str, int]] = {}  # node key -> (rollout id, prefix length) that pays for it
    asks = {}
    for r in rollouts:
        for j, key in enumerate(keys[r.rollout_id]):
            if key not in owner:
                owner[key] = (r.rollout_id, j)
                asks[key] = ask_for(r, j, cfg.k)
    order = list(owner)
    tasks = [mc_estimate(prover, asks[key], cfg.k, reuse=True) for key in order]
    q: dict[str, Estimate] = dict(zip(order, drive(prover, tasks, NAME)))
    version = labeler_version(CODE_VERSION, cfg)
    labels = []
    for r in rollouts:
        ks = keys[r.rollout_id]
        for i in range(len(r.steps)):
            before, after = q[ks[i]], q[ks[i + 1]]
            if before.samples == 0 or after.samples == 0:
                prover.failures.record(f"label:{NAME}", "the prover could not be sampled for this step's "
                                       "prefixes; the step is left unlabeled", item_id=f"{r.rollout_id}:{i}")
                continue
            # cost: the estimate after step i is paid by step i; the question's estimate by step 0
            paid = [after] if owner[ks[i + 1]] == (r.rollout_id, i + 1) else []
            if i == 0 and owner[ks[0]] == (r.rollout_id, 0):
                paid.append(before)
            p_value = drop_p_value(before.successes, before.samples, after.successes, after.samples)
            hard = p_value >= cfg.alpha if cfg.label_mode == "advantage" else after.successes > 0
            labels.append(StepLabel(
                problem_id=r.problem_id, rollout_id=r.rollout_id, step_index=i, labeler=NAME,
                labeler_version=version, value=after.value - before.value, hard_label=hard,
                confidence=min(wilson_confidence(before.successes, before.samples),
                               wilson_confidence(after.successes, after.samples)),
                prompt_tokens=sum(e.prompt_tokens for e in paid),
                completion_tokens=sum(e.completion_tokens for e in paid),
                calls=sum(e.calls for e in paid),
                evidence={"q_prefix": before.value, "q_next": after.value,
                          "q_prefix_samples": before.samples, "q_next_samples": after.samples,
                          "q_prefix_successes": before.successes, "q_next_successes": after.successes,
                          "drop_p_value": p_value, "label_mode": cfg.label_mode,
                          "node_id": after.node_id, "prover_model": prover.model,
                          "policy_model": r.policy_model}))
    return labels
