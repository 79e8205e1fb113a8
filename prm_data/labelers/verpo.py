"""Dense code step values from weighted partial success (after VeRPO).

VeRPO (Wang et al., "VeRPO: Verifiable Dense Reward Policy Optimization for Code
Generation", arXiv:2601.03525) turns the per-test results of code into a dense
reward: each unit test gets a difficulty weight estimated from its pass rate in
the group of solutions sampled for the problem (a test few solutions pass
weighs more), a solution's dense reward is the sum of the weights of the tests
it passes, and the dense signal is integrated with the global outcome (all
tests passed) so that partial success never outranks full success. Here that
reward values a step: like Math-Shepherd's Monte Carlo estimate (arXiv
2312.08935, `mc_value`), `k` continuations are sampled from each step prefix,
and the step's value is the mean reward of its continuations.

The paper's text beyond its abstract could not be read where this was written;
its three parts are implemented as follows, each a named setting:

- pass rate of test j: rho_j = (continuations of the problem passing j) / (all
  continuations of the problem), over every continuation sampled from every
  step prefix of every rollout of that problem in this call (the group; no
  tree reuse: the tree keeps success counts, not per-test results);
- weight: w_j = (1 - rho_j + `smoothing`) / sum_i (1 - rho_i + `smoothing`): a
  test every solution passes carries weight `smoothing` only (no information),
  the hardest carry the most; when every test is passed by every
  continuation, the weights are equal;
- reward of a continuation: (outcome + `dense_weight` * dense) / (1 + `dense_weight`)
  with outcome = 1 when every test passed (the verifier's status `correct`) and
  dense = sum_j w_j * passed_j. A fully correct continuation gets 1; a partial
  one at most dense_weight / (1 + dense_weight) (1/2 by default).

A continuation whose program never ran its tests (a syntax error, a timeout:
its `Outcome.tests` empty) passes none. Hard label: some continuation passes
every test (Math-Shepherd's hard estimate on the same samples).

Inputs: `RolloutSteps` and a `Completer` whose completions carry their verifier
`Outcome` (`Completion.outcome`, per-test `TestResult`s in the problem's test
order: prm_data/verifiers/protocol.py). Output: one label per step, value = the
VeRPO step value, with the test weights and pass rates in the evidence and the
tokens and calls its continuations cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from prm_data.records import JSON, StepLabels, wilson_confidence
from prm_data.rollouts import RolloutSteps
from prm_data.trees.prefix_tree import prefix_node_ids
from prm_data.trees.sampling import Ask, Completer, ask_for, drive, labeler_version
from prm_data.verifiers.protocol import Outcome

NAME = "verpo"
CODE_VERSION = "v1"
EVIDENCE = {"node_id": pa.string(), "k": pa.int64(), "samples": pa.int64(), "successes": pa.int64(),
            "mean_dense": pa.float64(), "test_weights": JSON, "pass_rates": JSON, "dense_weight": pa.float64()}


class VeRPOConfig(BaseModel):
    """VeRPO-style dense step values: continuations per step, test weighting and the outcome mix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(8, ge=1, description="Continuations sampled per step prefix (as Math-Shepherd's N = 8).")
    smoothing: float = Field(0.0, ge=0, description="Added to every test's difficulty 1 - pass rate before "
                                                    "normalizing (0: a test all continuations pass weighs 0).")
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense partial-success reward beside the "
                                                       "global outcome (0: the plain pass/fail outcome).")


def passed_tests(outcome: Outcome, n_tests: int) -> list[bool]:
    """Which of the problem's `n_tests` tests `outcome` passed (a program that ran none passed none)."""
    if not outcome.tests:
        return [False] * n_tests
    if len(outcome.tests) != n_tests:
        raise ValueError(f"an outcome with {len(outcome.tests)} test results for a problem of {n_tests} tests "
                         f"({outcome.tag}): per-test results must follow the problem's test order")
    return [t.passed for t in outcome.tests]


def pass_rates(group: Sequence[Outcome], n_tests: int) -> list[float]:
    """rho_j: the share of the group's outcomes that pass test j."""
    if not group:
        raise ValueError("pass rates of an empty group")
    passes = [passed_tests(o, n_tests) for o in group]
    return [sum(p[j] for p in passes) / len(group) for j in range(n_tests)]


def difficulty_weights(rates: Sequence[float], smoothing: float = 0.0) -> list[float]:
    """w_j proportional to 1 - rho_j + smoothing, summing to 1; equal when no test is ever failed."""
    difficulty = [1.0 - r + smoothing for r in rates]
    total = sum(difficulty)
    if total <= 0:
        return [1.0 / len(rates)] * len(rates) if rates else []
    return [d / total for d in difficulty]


def dense_score(outcome: Outcome, weights: Sequence[float]) -> float:
    """The weighted share of tests `outcome` passed (1 when it passed them all)."""
    if not weights:
        return float(outcome.success)
    return sum(w for w, ok in zip(weights, passed_tests(outcome, len(weights))) if ok)


def reward(outcome: Outcome, weights: Sequence[float], dense_weight: float) -> float:
    """(global outcome + dense_weight * dense) / (1 + dense_weight)."""
    dense = 1.0 if outcome.success else dense_score(outcome, weights)
    return (float(outcome.success) + dense_weight * dense) / (1.0 + dense_weight)


def step_values(continuations: Sequence[Sequence[Outcome]], n_tests: int,
                cfg: VeRPOConfig = VeRPOConfig()) -> tuple[list[float | None], list[float], list[float]]:
    """(value of each step, test weights, pass rates) for one problem: `continuations[i]` are the outcomes of
    the continuations sampled from step prefix i, and all of them together are the group the weights come from.
    A step with no continuation has value None."""
    group = [o for outs in continuations for o in outs]
    rates = pass_rates(group, n_tests) if group else [0.0] * n_tests
    weights = difficulty_weights(rates, cfg.smoothing)
    values = [sum(reward(o, weights, cfg.dense_weight) for o in outs) / len(outs) if outs else None
              for outs in continuations]
    return values, weights, rates


def _sample(ask: Ask):
    got = yield ask
    return got


def _n_tests(rollout: RolloutSteps, outcomes: Sequence[Outcome]) -> int:
    spec = rollout.outcome_spec
    if spec is not None and spec.tests:
        return len(spec.tests)
    return max((len(o.tests) for o in outcomes), default=0)


def label_verpo(rollouts: Sequence[RolloutSteps], completer: Completer,
                cfg: VeRPOConfig = VeRPOConfig()) -> StepLabels:
    """Sample `k` continuations per step prefix and label every step with its VeRPO value."""
    completer.add_rollouts(rollouts)
    items = [(r, i) for r in rollouts for i in range(len(r.steps))]
    got = drive(completer, [_sample(ask_for(r, i + 1, cfg.k)) for r, i in items], NAME)
    by_problem: dict[str, list[int]] = {}
    for j, (r, _) in enumerate(items):
        by_problem.setdefault(r.problem_id, []).append(j)
    labels = StepLabels(NAME, labeler_version(CODE_VERSION, cfg), EVIDENCE)
    rows: dict[int, tuple] = {}
    for problem_id, members in by_problem.items():
        outcomes = [[c.outcome for c in got[j] or ()] for j in members]
        n_tests = _n_tests(items[members[0]][0], [o for outs in outcomes for o in outs])
        values, weights, rates = step_values(outcomes, n_tests, cfg)
        for j, outs, value in zip(members, outcomes, values):
            rows[j] = (outs, value, weights, rates)
    for j, (r, i) in enumerate(items):
        outs, value, weights, rates = rows[j]
        if value is None:
            completer.failures.record(f"label:{NAME}", "no continuation could be sampled for this step prefix; "
                                      "the step is left unlabeled", item_id=f"{r.rollout_id}:{i}")
            continue
        fresh = [c for c in got[j] if not c.cached]
        successes = sum(o.success for o in outs)
        labels.add(problem_id=r.problem_id, rollout_id=r.rollout_id, step_index=i, value=value,
                   hard_label=successes > 0, confidence=wilson_confidence(successes, len(outs)),
                   prompt_tokens=sum(c.prompt_tokens for c in fresh),
                   completion_tokens=sum(c.completion_tokens for c in fresh), calls=len(fresh),
                   evidence={"node_id": prefix_node_ids(r.problem_id, r.steps)[i], "k": cfg.k, "samples": len(outs),
                             "successes": successes,
                             "mean_dense": sum(dense_score(o, weights) for o in outs) / len(outs),
                             "test_weights": weights, "pass_rates": rates, "dense_weight": cfg.dense_weight})
    return labels
