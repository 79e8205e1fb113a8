"""benchmarks/judging.py runs end to end (quick sizes) and reports the issue's numbers with their tokens."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_judging_benchmark_reports_every_measure_with_tokens():
    spec = importlib.util.spec_from_file_location("judging_benchmark", ROOT / "benchmarks" / "judging.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.run(quick=True)
    tool = results["tool_verification"]["default"]
    assert tool["catch_rate"]["arithmetic"] >= 0.95 and tool["false_alarm_rate"] <= 0.01
    judges = results["judges"]
    assert judges["per_step_5"]["step_accuracy"] > judges["per_step_3"]["step_accuracy"] > \
        judges["per_step_1"]["step_accuracy"]
    assert all(judges[k]["tokens"] > 0 for k in ("per_step_1", "per_step_5", "first_error_5"))
    consensus = results["consensus"]
    assert consensus["consensus"]["first_error_accuracy"] > consensus["mc_only"]["first_error_accuracy"]
    assert consensus["consensus"]["tokens"] == consensus["mc_tokens"] + consensus["judge_tokens"] > 0
    assert results["rubrics"]["rubric_graded"]["step_accuracy"] > results["rubrics"]["plain"]["step_accuracy"]
    assert results["probes"]["hackable"]["refused"] and not results["probes"]["honest"]["refused"]
    assert "first-error accuracy" in module.table(results)
