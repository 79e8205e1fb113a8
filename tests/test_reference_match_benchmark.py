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
