"""benchmarks/reference_match.py: its hand-labeled problem set is well formed and measured by the zero-call labelers."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def benchmark():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports labeling_cost as the benchmarks do
    try:
        spec = importlib.util.spec_from_file_location("reference_match_benchmark",
                                                      ROOT / "benchmarks" / "reference_match.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_every_hand_labeled_first_error_points_at_a_step_and_every_reference_states_computations(benchmark):
    from prm_data.labelers.reference_match import reference_steps

    data = json.loads(benchmark.HUMAN_SET.read_text())
    for p in data["problems"]:
        assert any(s.computations for s in reference_steps(p["reference_solution"])), p["problem_id"]
        for s in p["solutions"]:
            assert -1 <= s["true_first_error"] < len(s["steps"]), (p["problem_id"], s["steps"])
            assert s["is_correct"] is not None


def test_the_problem_set_is_scored_with_coverage_and_zero_calls(benchmark, tmp_path):
    data = json.loads(benchmark.HUMAN_SET.read_text())
    data["problems"] = data["problems"][:1]  # one problem: the scoring, not the figure
    small = tmp_path / "set.json"
    small.write_text(json.dumps(data))
    out = benchmark.problem_set(small)
    m = out["methods"]["reference_match"]
    assert out["solutions"] == 3 and m["steps"] == out["steps"] == 8
    # the prose solution abstains on all 3 of its steps; the others are matched step by step
    assert m["labeled_steps"] == 5 and m["coverage"] == pytest.approx(5 / 8)
    assert m["first_error_accuracy"] == pytest.approx(2 / 3) and m["calls"] == 0


@pytest.mark.slow
def test_every_hand_written_code_reference_passes_its_own_tests(benchmark):
    from prm_data.labelers.code_trace import split_reference, trace_solution
    from prm_data.verifiers.protocol import OutcomeSpec

    data = json.loads(benchmark.HUMAN_CODE_SET.read_text())
    for p in data["problems"]:
        trace = trace_solution(split_reference(p["reference_solution"]), OutcomeSpec.from_problem(p))
        assert trace.load_error is None and all(t.passed for t in trace.tests), p["problem_id"]
        for s in p["solutions"]:
            assert -1 <= s["true_first_error"] < len(s["steps"]), (p["problem_id"], s["steps"])


def _labels(rollout_id: str, values: list[float]):
    from types import SimpleNamespace
    return [SimpleNamespace(rollout_id=rollout_id, step_index=i, value=v) for i, v in enumerate(values)]


def test_value_auc_is_the_share_of_good_bad_step_pairs_ranked_right(benchmark):
    from prm_data.rollouts import RolloutSteps
    rollouts = [RolloutSteps("p", "a", "q", ("s0", "s1", "s2"), true_first_error=1),
                RolloutSteps("p", "b", "q", ("s0", "s1"), true_first_error=-1)]
    auc = benchmark.value_auc
    # good steps: a0, b0, b1; bad: a1, a2
    assert auc(rollouts, _labels("a", [0.9, 0.0, 0.1]) + _labels("b", [0.8, 0.7])) == 1.0
    assert auc(rollouts, _labels("a", [0.0, 0.9, 0.8]) + _labels("b", [0.1, 0.2])) == 0.0
    # a0 = 0.5 ties a1: half a win; b's steps beat both bad ones: (1.5 + 2 + 2) / 6
    assert auc(rollouts, _labels("a", [0.5, 0.5, 0.1]) + _labels("b", [0.8, 0.7])) == pytest.approx(5.5 / 6)
    assert auc(rollouts[1:], _labels("b", [0.8, 0.7])) is None  # no bad step to rank against


def test_memo_verifiers_run_each_distinct_program_once_with_the_plain_verifiers_outcomes(benchmark):
    from prm_data.verifiers.protocol import OutcomeSpec
    from prm_data.verifiers.registry import Verifiers
    spec = OutcomeSpec("code", tests=("assert f(2) == 4", "assert f(0) == 0"), entry_point="f")
    right, wrong = "```python\ndef f(x):\n    return 2 * x\n```", "```python\ndef f(x):\n    return x + 2\n```"
    items = [(spec, right), (spec, wrong), (spec, right), (spec, wrong), (spec, right)]
    memo = benchmark.MemoVerifiers()
    got = memo.verify_many(items)
    plain = Verifiers().verify_many(items[:2])
    assert [o.success for o in got] == [True, False, True, False, True]
    assert [[t.passed for t in o.tests] for o in got[:2]] == [[t.passed for t in o.tests] for o in plain]
    assert memo.counts() == {"gradings_asked": 5, "programs_run": 2}
