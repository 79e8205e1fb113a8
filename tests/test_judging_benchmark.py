"""benchmarks/judging.py runs end to end (quick sizes) and measures behaviour, not the simulator's settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results():
    spec = importlib.util.spec_from_file_location("judging_benchmark", ROOT / "benchmarks" / "judging.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.run(quick=True)
    out["_table"] = module.table(out)
    return out


@pytest.mark.slow
def test_tool_verification_misses_the_errors_it_cannot_see_and_never_raises_false_alarms(results):
    tool = results["tool_verification"]["default"]
    assert tool["false_alarm_rate"] <= 0.01
    # an operand misread is locally right arithmetic: the tool sees fewer of all first errors than of wrong sums
    assert tool["catch_rate_all_first_errors"] < tool["catch_rate"]["arithmetic"]
    assert results["tool_verification"]["question_values"]["catch_rate_all_first_errors"] > \
        tool["catch_rate_all_first_errors"]


@pytest.mark.slow
def test_majority_vote_gains_less_when_judges_err_on_the_same_steps(results):
    by_rho = results["judges"]["by_correlation"]
    gain = {rho: row["per_step_5"]["step_accuracy"] - row["per_step_1"]["step_accuracy"] for rho, row in by_rho.items()}
    assert gain["0.0"] > gain["0.5"] + 0.03
    independent = by_rho["0.0"]
    assert independent["per_step_5"]["step_accuracy"] > independent["per_step_3"]["step_accuracy"] > \
        independent["per_step_1"]["step_accuracy"]
    assert all(row["per_step_5"]["tokens"] > 0 for row in by_rho.values())


@pytest.mark.slow
def test_consensus_is_compared_with_monte_carlo_at_the_same_k_on_the_same_rollouts(results):
    for world in ("k8_default", "k2_default"):
        c = results["consensus"][world]
        kept = c["consensus"]
        assert 0 < kept["kept_share"] < 1 and c["mc_only"]["kept_share"] == 1
        # on the rollouts it keeps, consensus carries Monte Carlo's labels: the same accuracy, measured twice
        assert kept["first_error_accuracy"] == kept["mc_only_on_same_rollouts"]
        assert kept["mc_only_confidence_filter_same_share"] is not None
        assert kept["tokens"] == c["mc_tokens"] + c["judge_tokens"] > 0
    assert results["consensus"]["k8_default"]["mc_tokens"] > 3 * results["consensus"]["k2_default"]["mc_tokens"]


@pytest.mark.slow
def test_a_rubric_helps_through_its_rules_only(results):
    for row in results["rubrics"]["by_adherence"].values():
        assert row["rubric_graded"]["step_accuracy"] > row["final_answer_rule_only"]["step_accuracy"] + 0.05
        assert abs(row["another_problems_rubric"]["step_accuracy"]
                   - row["final_answer_rule_only"]["step_accuracy"]) < 0.05
    low, high = results["rubrics"]["by_adherence"].values()
    assert high["rubric_graded"]["step_accuracy"] > low["rubric_graded"]["step_accuracy"]


@pytest.mark.slow
def test_the_probes_refuse_judges_in_order_of_how_often_they_are_fooled(results):
    verdicts = [r["refused"] for r in results["probes"]["by_fooled_rate"].values()]  # rates ascending
    assert verdicts == sorted(verdicts) and verdicts[0] is False and verdicts[-1] is True
    assert all(r["refused"] == (r["accept_share"] > results["probes"]["max_accept_share"])
               for r in results["probes"]["by_fooled_rate"].values())
    assert "first-error accuracy" in results["_table"]
