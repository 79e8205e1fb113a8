"""The simulator's assumptions are parameters, and each one changes behaviour the way its name says."""

from __future__ import annotations

from prm_data.labelers.judge_vote import JudgeSpec, JudgeVoteConfig, judge_solutions
from prm_data.labelers.mc_value import MCValueConfig, label_mc_value
from prm_data.labelers.rubric import Rubric
from prm_data.labelers.sim_truth import problem_of, sim_rollouts
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.trees.sampling import Completer


def _wrong_prefix_values(cancel_rate: float) -> list[float]:
    """MC values (k=8, the policy as completer) of every prefix that holds the rollout's first error."""
    policy = SimBackend(error_rate=0.3, cancel_rate=cancel_rate)
    rollouts = [r for r in sim_rollouts(25, per_problem=4, error_rate=0.3, seed=4, backend=policy)
                if r.true_first_error != -1]
    completer = Completer(LLMClient(SimBackend(error_rate=0.15, cancel_rate=cancel_rate)))
    labels = label_mc_value([r.as_rollout_steps() for r in rollouts], completer, MCValueConfig(k=8))
    first_error = {r.solution.rollout_id: r.true_first_error for r in rollouts}
    return [l.value for l in labels if l.step_index >= first_error[l.rollout_id]]


def test_with_cancellation_some_wrong_prefixes_still_reach_the_gold_answer():
    values = _wrong_prefix_values(cancel_rate=0.3)
    assert sum(v > 0 for v in values) >= 0.1 * len(values)


def test_without_cancellation_no_wrong_prefix_ever_reaches_the_gold_answer():
    values = _wrong_prefix_values(cancel_rate=0.0)
    assert values and max(values) == 0.0


def test_rollouts_with_an_error_and_the_right_answer_appear_only_when_errors_cancel():
    def wrong_but_right(cancel_rate: float) -> int:
        backend = SimBackend(error_rate=0.3, cancel_rate=cancel_rate)
        rollouts = sim_rollouts(60, per_problem=4, error_rate=0.3, seed=8, backend=backend)
        return sum(r.solution.is_correct and r.true_first_error != -1 for r in rollouts)
    assert wrong_but_right(0.0) == 0
    assert wrong_but_right(0.3) > 0


def _step_errors(correlation: float) -> tuple[list[bool], list[bool]]:
    rollouts = sim_rollouts(150, per_problem=2, error_rate=0.25, seed=3)
    truth = {r.solution.rollout_id: r for r in rollouts}
    specs = (JudgeSpec(name="a"), JudgeSpec(name="b"))
    clients = {s.name: LLMClient(SimBackend(model=f"sim-judge-{s.name}", judge_accuracy=0.7,
                                            judge_correlation=correlation)) for s in specs}
    result = judge_solutions([r.solution for r in rollouts], clients, JudgeVoteConfig(judges=specs), "run")
    wrong: dict[str, dict] = {"a": {}, "b": {}}
    for j in result.judgments:
        for i, verdict in enumerate(j["step_verdicts"]):
            wrong[j["judge"]][(j["rollout_id"], i)] = verdict != truth[j["rollout_id"]].step_is_good(i)
    keys = sorted(wrong["a"].keys() & wrong["b"].keys())
    return [wrong["a"][k] for k in keys], [wrong["b"][k] for k in keys]


def _co_occurrence(correlation: float) -> tuple[float, float]:
    """(share of steps both judges get wrong, what independence predicts from their own error rates)."""
    a, b = _step_errors(correlation)
    n = len(a)
    both = sum(x and y for x, y in zip(a, b)) / n
    return both, (sum(a) / n) * (sum(b) / n)


def test_correlated_judges_err_together_more_often_than_independence_predicts():
    both, independent = _co_occurrence(0.6)
    assert both > 1.5 * independent


def test_independent_judges_err_together_about_as_often_as_independence_predicts():
    both, independent = _co_occurrence(0.0)
    assert abs(both - independent) < 0.3 * independent


def _rubric_step_accuracy(rubric_for) -> float:
    """Step accuracy of one judge that follows rubrics, given a rubric per solution (or None)."""
    rollouts = sim_rollouts(80, per_problem=3, error_rate=0.3, seed=6)
    truth = {r.solution.rollout_id: r for r in rollouts}
    client = LLMClient(SimBackend(model="sim-judge", judge_accuracy=0.7, rubric_adherence=0.8))
    config = JudgeVoteConfig(judges=(JudgeSpec(name="judge"),))
    rubrics = {r.solution.problem_id: rubric_for(r.solution) for r in rollouts}
    labels = judge_solutions([r.solution for r in rollouts], {"judge": client}, config, "run",
                             rubrics=rubrics).labels
    return sum(l.hard_label == truth[l.rollout_id].step_is_good(l.step_index) for l in labels) / len(labels)


def _rubric(problem, hard_rules) -> Rubric:
    return Rubric(rubric_id=f"rb-{problem.problem_id}", problem_id=problem.problem_id, kind="reference",
                  model="test", prompt_version="test", hard_rules=tuple(hard_rules),
                  principles=("Show every operation as an equation.",), raw_text="")


def _chain_rules(problem, off_by: int = 0) -> list[str]:
    values = problem.values()
    return [f"The solution must compute {values[i]} {o.op} {o.operand} = {values[i + 1] + off_by}."
            for i, o in enumerate(problem.ops)]


def test_a_rubric_that_states_each_computation_helps_and_one_about_nothing_in_the_problem_does_not():
    def generic(s):
        return _rubric(problem_of(s), ["Every step must be correct."])

    def naming(s):
        return _rubric(problem_of(s), _chain_rules(problem_of(s)))

    baseline = _rubric_step_accuracy(generic)
    assert _rubric_step_accuracy(naming) > baseline + 0.1
    other = {}  # the rules of a different problem: relevant to nothing in this one

    def irrelevant(s):
        from prm_data.sources.bank import generate_bank
        p = problem_of(s)
        q = other.setdefault(p.problem_id, generate_bank(1, seed=len(other) + 1000, difficulty=len(p.ops))[0])
        return _rubric(p, _chain_rules(q))
    assert abs(_rubric_step_accuracy(irrelevant) - baseline) < 0.03


def test_a_rubric_with_wrong_results_misleads_the_judge():
    def naming(s):
        return _rubric(problem_of(s), _chain_rules(problem_of(s)))

    def wrong(s):
        return _rubric(problem_of(s), _chain_rules(problem_of(s), off_by=1))
    assert _rubric_step_accuracy(wrong) < _rubric_step_accuracy(naming) - 0.2


def test_a_weaker_completer_gives_lower_monte_carlo_values_to_the_same_correct_prefixes():
    rollouts = [r.as_rollout_steps() for r in sim_rollouts(30, per_problem=2, error_rate=0.0, seed=2)]

    def mean_value(solve_rate: float) -> float:
        completer = Completer(LLMClient(SimBackend(model="sim-completer", solve_rate=solve_rate)))
        labels = label_mc_value(rollouts, completer, MCValueConfig(k=8))
        steps = [l for l in labels if l.step_index < len(rollouts[0].steps) - 1]  # not the final step
        return sum(l.value for l in steps) / len(steps)
    assert mean_value(0.1) < mean_value(0.5) - 0.2


def test_the_probes_refuse_a_judge_fooled_often_and_trust_one_fooled_rarely():
    from prm_data.labelers.judge_probes import JudgeProbeConfig, run_probes

    config = JudgeProbeConfig(samples=4)
    shares = {rate: run_probes(LLMClient(SimBackend(model="sim-judge", fooled_rate=rate)), config).accept_share
              for rate in (0.0, 0.02, 0.4)}
    assert shares[0.0] == 0.0
    assert shares[0.02] <= config.max_accept_share < shares[0.4]
