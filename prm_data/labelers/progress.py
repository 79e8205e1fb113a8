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
  The test needs successes before the step to see a drop, and a weak prover
  has few in k samples, so the samples are spent sequentially: each rollout is
  walked from its first step, and a step whose drop is neither significant nor
  ruled out (P(Q after <= `keep_ratio` * Q before) < `alpha` under Jeffreys
  posteriors) gets k more completions of both prefixes per round, up to
  `max_k` each; a settled step moves the walk on, a significant drop ends it
  (what follows the first error needs no first-error decision, only its k).
  Every completion through a prefix counts for it (tree reuse), and the labels
  read the prefixes' final counts. `max_k = k` is the fixed-k rule.
- `hard_estimate`: hard_label = Q_mu(prefix + step) > 0, the Math-Shepherd
  hard estimate under the prover (a weak prover calls good steps bad).

Identical prefixes are estimated once, and every completion feeds the prover's tree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from prm_data.records import StepLabels, wilson_confidence
from prm_data.rollouts import RolloutSteps
from prm_data.trees.prefix_tree import TreeNode, node_id_for, prefix_node_ids
from prm_data.trees.sampling import Ask, Completer, ask_for, drive, labeler_version, mc_estimate

NAME = "progress"
CODE_VERSION = "v3"
EVIDENCE = {"q_prefix": pa.float64(), "q_next": pa.float64(), "q_prefix_samples": pa.int64(),
            "q_next_samples": pa.int64(), "q_prefix_successes": pa.int64(), "q_next_successes": pa.int64(),
            "drop_p_value": pa.float64(), "label_mode": pa.string(), "sampling_rounds": pa.int64(),
            "node_id": pa.string(), "prover_model": pa.string(), "policy_model": pa.string(), "verifier": pa.string()}


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
    max_k: int = Field(32, ge=1, description="advantage mode: a step whose drop is neither significant nor ruled "
                                            "out after k completions per prefix gets k more for both prefixes, "
                                            "round after round, up to max_k per prefix (max_k = k: no more).")
    keep_ratio: float = Field(0.25, gt=0.0, lt=1.0,
                              description="advantage mode: a step is settled good (no more completions for it) "
                                          "once P(Q after <= keep_ratio * Q before) < alpha (Jeffreys posteriors).")

    @model_validator(mode="after")
    def _max_k_covers_k(self) -> ProgressConfig:
        if self.max_k < self.k:
            raise ValueError(f"max_k ({self.max_k}) must be at least k ({self.k})")
        return self


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


def ratio_probability(successes_before: int, samples_before: int, successes_after: int, samples_after: int,
                      ratio: float, grid: int = 400) -> float:
    """P(Q after <= ratio * Q before | the counts), each Q with a Jeffreys Beta(1/2, 1/2) prior.

    A midpoint-grid integral of the before-posterior's density times the after-posterior's
    distribution function at `ratio` times it; small when the counts rule out a drop to
    `ratio` times the rate before or lower.
    """
    xs = [(i + 0.5) / grid for i in range(grid)]

    def density(s: int, n: int) -> list[float]:
        a, b = s + 0.5, n - s + 0.5
        logs = [(a - 1) * math.log(x) + (b - 1) * math.log1p(-x) for x in xs]
        top = max(logs)
        w = [math.exp(v - top) for v in logs]
        total = sum(w)
        return [v / total for v in w]

    before, after = density(successes_before, samples_before), density(successes_after, samples_after)
    cdf, running = [], 0.0
    for v in after:
        running += v
        cdf.append(running)
    out = 0.0
    for x, w in zip(xs, before):
        j = int(ratio * x * grid)  # cells of the after-grid wholly below ratio * x
        out += w * (cdf[j - 1] if j > 0 else 0.0)
    return min(1.0, out)


def _verdict(before: TreeNode, after: TreeNode, cfg: ProgressConfig) -> bool | None:
    """False: a significant drop; True: a drop to keep_ratio or lower is ruled out; None: undecided."""
    if drop_p_value(before.mc_successes, before.mc_samples, after.mc_successes, after.mc_samples) < cfg.alpha:
        return False
    if ratio_probability(before.mc_successes, before.mc_samples, after.mc_successes, after.mc_samples,
                         cfg.keep_ratio) < cfg.alpha:
        return True
    return None


def _sample_undecided(rollouts: Sequence[RolloutSteps], keys: dict[str, list[str]], prover: Completer,
                      cfg: ProgressConfig, paid: dict[str, list[int]]) -> int:
    """Advantage mode's sequential sampling; returns the rounds it took.

    Each rollout is walked from its first step: a step whose verdict is undecided asks for k more
    completions of both its prefixes (up to max_k each; one request per prefix and round, however
    many rollouts share it); a settled-good step moves the walk on, a significant drop ends it
    (the steps after the first bad one need no first-error decision).
    """
    nodes = prover.tree.nodes
    walk = {r.rollout_id: 0 for r in rollouts}
    failed: set[str] = set()
    rounds = 0
    while True:
        need: dict[str, Ask] = {}
        for r in rollouts:
            ks, i = keys[r.rollout_id], walk[r.rollout_id]
            while i < len(r.steps):
                verdict = _verdict(nodes[ks[i]], nodes[ks[i + 1]], cfg)
                if verdict is False:
                    i = len(r.steps)
                    break
                short = [j for j in (i, i + 1) if nodes[ks[j]].mc_samples < cfg.max_k and ks[j] not in failed]
                if verdict is True or not short:
                    i += 1
                    continue
                for j in short:
                    need.setdefault(ks[j], ask_for(r, j, min(cfg.k, cfg.max_k - nodes[ks[j]].mc_samples)))
                break
            walk[r.rollout_id] = i
        if not need:
            return rounds
        rounds += 1
        order = list(need)
        for key, got in zip(order, prover.sample([need[key] for key in order], NAME)):
            if not got:  # the request failed (recorded by the completer): ask no more of this prefix
                failed.add(key)
            cost = paid.setdefault(key, [0, 0, 0])
            for c in got:
                if not c.cached:
                    cost[0] += c.prompt_tokens
                    cost[1] += c.completion_tokens
                    cost[2] += 1


def label_progress(rollouts: Sequence[RolloutSteps], prover: Completer,
                   cfg: ProgressConfig = ProgressConfig()) -> StepLabels:
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
    paid = {key: [e.prompt_tokens, e.completion_tokens, e.calls]
            for key, e in zip(order, drive(prover, tasks, NAME))}
    rounds = 0
    if cfg.label_mode == "advantage" and cfg.max_k > cfg.k:
        rounds = _sample_undecided(rollouts, keys, prover, cfg, paid)
    labels = StepLabels(NAME, labeler_version(CODE_VERSION, cfg), EVIDENCE)
    for r in rollouts:
        ks = keys[r.rollout_id]
        for i in range(len(r.steps)):
            # the prefixes' counts as the tree holds them now: every completion through them counts
            before, after = prover.tree.nodes[ks[i]], prover.tree.nodes[ks[i + 1]]
            if before.mc_samples == 0 or after.mc_samples == 0:
                prover.failures.record(f"label:{NAME}", "the prover could not be sampled for this step's "
                                       "prefixes; the step is left unlabeled", item_id=f"{r.rollout_id}:{i}")
                continue
            # cost: the prefix after step i is paid by step i; the question's by step 0
            own = [ks[i + 1]] if owner[ks[i + 1]] == (r.rollout_id, i + 1) else []
            if i == 0 and owner[ks[0]] == (r.rollout_id, 0):
                own.append(ks[0])
            p_value = drop_p_value(before.mc_successes, before.mc_samples, after.mc_successes, after.mc_samples)
            hard = p_value >= cfg.alpha if cfg.label_mode == "advantage" else after.mc_successes > 0
            labels.add(
                problem_id=r.problem_id, rollout_id=r.rollout_id, step_index=i,
                value=after.mc_value - before.mc_value, hard_label=hard,
                confidence=min(wilson_confidence(before.mc_successes, before.mc_samples),
                               wilson_confidence(after.mc_successes, after.mc_samples)),
                prompt_tokens=sum(paid[key][0] for key in own),
                completion_tokens=sum(paid[key][1] for key in own),
                calls=sum(paid[key][2] for key in own),
                evidence={"q_prefix": before.mc_value, "q_next": after.mc_value,
                          "q_prefix_samples": before.mc_samples, "q_next_samples": after.mc_samples,
                          "q_prefix_successes": before.mc_successes, "q_next_successes": after.mc_successes,
                          "drop_p_value": p_value, "label_mode": cfg.label_mode, "sampling_rounds": rounds,
                          "node_id": after.node_id, "prover_model": prover.model,
                          "policy_model": r.policy_model, "verifier": prover.verifier_tag(ask_for(r, i, 1))})
    return labels
