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

Each step gets value = A (in [-1, 1]), hard_label = Q_mu(prefix + step) > 0 (the
step leaves a correct finish reachable for the prover) and confidence = the
smaller of the two estimates' Wilson confidences. Identical prefixes are
estimated once, and every completion feeds the prover's tree.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from prm_data.records import StepLabel, wilson_confidence
from prm_data.rollouts import RolloutSteps
from prm_data.trees.prefix_tree import node_id_for, prefix_node_ids
from prm_data.trees.sampling import Completer, Estimate, ask_for, drive, labeler_version, mc_estimate

NAME = "progress"
CODE_VERSION = "v1"


class ProgressConfig(BaseModel):
    """Rewarding Progress settings: the prover and its Monte Carlo budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(8, ge=1, description="Prover completions per prefix for Q_mu.")
    prover_model: str | None = Field(
        None, description="Model of the prover; may differ from the policy. None: not checked.")


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
            labels.append(StepLabel(
                problem_id=r.problem_id, rollout_id=r.rollout_id, step_index=i, labeler=NAME,
                labeler_version=version, value=after.value - before.value, hard_label=after.successes > 0,
                confidence=min(wilson_confidence(before.successes, before.samples),
                               wilson_confidence(after.successes, after.samples)),
                prompt_tokens=sum(e.prompt_tokens for e in paid),
                completion_tokens=sum(e.completion_tokens for e in paid),
                calls=sum(e.calls for e in paid),
                evidence={"q_prefix": before.value, "q_next": after.value,
                          "q_prefix_samples": before.samples, "q_next_samples": after.samples,
                          "node_id": after.node_id, "prover_model": prover.model,
                          "policy_model": r.policy_model}))
    return labels
