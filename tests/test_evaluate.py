"""ProcessBench F1 and best-of-N, checked against hand computations."""

from __future__ import annotations

import pytest
from export_fixture import RUN, STEPS, build_fixture_warehouse
from typer.testing import CliRunner

from prm_data.cli import app
from prm_data.evaluate import (
    best_of_n,
    first_error_at,
    processbench_f1,
    processbench_from_scores,
    source_first_errors,
)
from prm_data.export import ExportConfig
from prm_data.export_run import run_export
def test_processbench_f1_is_the_harmonic_mean_of_the_two_accuracies():
    labels = [-1, -1, -1, 0, 2, 2, 1]
    predictions = [-1, 1, -1, 0, 1, 2, -1]
    score = processbench_f1(predictions, labels)
    # correct samples: 2 of 3 predicted -1; erroneous: 2 of 4 exact (0 and the second 2)
    assert (score.n_correct, score.n_erroneous) == (3, 4)
    assert score.acc_correct == pytest.approx(2 / 3)
    assert score.acc_erroneous == pytest.approx(1 / 2)
    assert score.f1 == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))  # 4/7


def test_f1_is_undefined_without_one_of_the_two_kinds_of_sample():
    assert processbench_f1([-1, 0], [-1, -1]).f1 is None
    assert processbench_f1([0], [1]).f1 is None
    assert processbench_f1([1, 0], [-1, 1]).f1 == 0.0


def test_a_prm_predicts_the_first_step_scored_below_the_threshold():
    scores = [[0.9, 0.8, 0.95], [0.9, 0.3, 0.2], [0.4, 0.9], [0.6, 0.55]]
    assert [first_error_at(s, 0.5) for s in scores] == [-1, 1, 0, -1]
    assert [first_error_at(s, 0.7) for s in scores] == [-1, 1, 0, 0]
    labels = [-1, 1, 1, 1]
    # t=0.5: correct 1/1; erroneous: r2 exact, r3 predicted 0 (wrong), r4 predicted -1 (wrong) -> 1/3
    assert processbench_from_scores(scores, labels, 0.5).f1 == pytest.approx(2 * 1 * (1 / 3) / (1 + 1 / 3))
    assert processbench_from_scores(scores, labels, 0.7).acc_erroneous == pytest.approx(1 / 3)


def test_best_of_n_picks_by_min_last_and_product():
    def cand(pid, rid, answer, ok):
        return {"problem_id": pid, "rollout_id": rid, "final_answer": answer, "is_correct": ok}

    candidates = [cand("p1", "a", "5", True), cand("p1", "b", "6", False), cand("p1", "c", "6", False),
                  cand("p2", "d", "7", False), cand("p2", "e", "8", True)]
    scores = {"a": [0.9, 0.2, 0.9], "b": [0.5, 0.5, 0.95], "c": [0.4, 0.4, 0.4],
              "d": [0.6, 0.99], "e": [0.7, 0.65]}
    out = best_of_n(candidates, scores)
    # min: p1 -> b (0.5) wrong, p2 -> e (0.65) right; last: p1 -> b (0.95) wrong, p2 -> d (0.99) wrong
    # product: p1 a=0.162 b=0.2375 c=0.064 -> b wrong; p2 d=0.594 e=0.455 -> d wrong
    assert out["accuracy@min"] == 0.5
    assert out["accuracy@last"] == 0.0
    assert out["accuracy@product"] == 0.0
    assert out["majority_vote"] == 0.0  # p1 majority "6" is wrong; p2 tie 7/8 goes to the first seen, "7"
    assert out["random"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert out["oracle"] == 1.0


NOISY = {  # rollout -> hard labels of a deliberately imperfect labeler "noisy"
    "r-1": [True, False, True],   # gold -1, predicts 1: wrong
    "r-2": [True, False, False],  # gold 1, predicts 1: right
    "r-5": [True, True],          # gold 0, predicts -1: wrong
    "r-6": [True, True],          # gold -1, predicts -1: right
    "r-7": [False, False],        # gold 1, predicts 0: wrong
}


@pytest.fixture
def labelled(tmp_path):
    wh = build_fixture_warehouse(tmp_path / "wh")
    wh.write_shard("step_labels", [
        {"run_id": RUN, "problem_id": STEPS[rid][0], "rollout_id": rid, "step_index": i, "labeler": "noisy",
         "labeler_version": "v2", "value": float(ok), "hard_label": ok, "prompt_tokens": 0, "completion_tokens": 0,
         "calls": 1}
        for rid, labels in NOISY.items() for i, ok in enumerate(labels)], run_id=RUN, shard="noisy")

    def judgment(jid, rid, sample, mode, first=None, verdicts=None, status="vote"):
        return {"judgment_id": jid, "run_id": RUN, "problem_id": STEPS[rid][0], "rollout_id": rid,
                "judge": "judge-a", "model": "sim-judge", "sample_index": sample, "mode": mode,
                "prompt_version": "judge_first_error.v1", "status": status, "first_error_step": first,
                "step_verdicts": verdicts}

    wh.write_shard("judgments", [
        judgment("a1", "r-2", 0, "first_error", first=1), judgment("a2", "r-2", 1, "per_step",
                                                                    verdicts=[True, False, True]),
        judgment("a3", "r-2", 2, "first_error", first=2),
        judgment("a4", "r-5", 0, "first_error", first=0), judgment("a5", "r-5", 1, "first_error", first=-1),
        judgment("a6", "r-6", 0, "first_error", first=1), judgment("a7", "r-6", 1, "first_error", status="abstain"),
    ], run_id=RUN, shard="judge-a")
    export = run_export(wh, tmp_path / "export", ExportConfig(test_fraction=0.5))
    return wh, export.path


def test_a_judge_votes_by_majority_and_ties_go_to_the_earliest_step(labelled):
    wh, _ = labelled
    assert source_first_errors(wh, "judge:judge-a") == {"r-2": 1, "r-5": 0, "r-6": 1}


def test_prm_data_eval_reproduces_a_hand_computed_f1_for_a_labeler(labelled, tmp_path):
    wh, export_dir = labelled
    plot = tmp_path / "eval.png"
    result = CliRunner().invoke(app, ["--warehouse", str(wh.root), "eval", "--dataset", str(export_dir),
                                      "--source", "labeler:noisy", "--source", "judge:judge-a", "--split", "all",
                                      "--plot", str(plot), "--run-id", "eval-1"])
    assert result.exit_code == 0, result.output
    # noisy: erroneous r-2 right, r-5 wrong, r-7 wrong -> 1/3; correct r-1 wrong, r-6 right -> 1/2
    # F1 = 2 * 1/3 * 1/2 / (1/3 + 1/2) = 0.4
    assert "processbench labeler:noisy: f1 = 0.4000 (n=5)" in result.output
    stored = {(r["evaluated"], r["metric"]): r["value"] for r in wh.rows(
        "SELECT * FROM eval_results WHERE run_id = 'eval-1'")}
    assert stored[("labeler:noisy", "f1")] == pytest.approx(0.4)
    assert stored[("labeler:noisy", "acc_erroneous")] == pytest.approx(1 / 3)
    assert stored[("labeler:noisy", "coverage")] == 1.0
    # judge-a covers r-2 (1, right), r-5 (0, right), r-6 (predicts 1, gold -1: wrong): F1 = 2*1*0/(1+0) = 0
    assert stored[("judge:judge-a", "acc_erroneous")] == 1.0
    assert stored[("judge:judge-a", "acc_correct")] == 0.0
    assert stored[("judge:judge-a", "f1")] == 0.0
    assert stored[("judge:judge-a", "coverage")] == pytest.approx(3 / 5)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_refuses_an_unknown_source_and_an_empty_request(labelled):
    wh, export_dir = labelled
    runner = CliRunner()
    bad = runner.invoke(app, ["--warehouse", str(wh.root), "eval", "-d", str(export_dir), "-s", "vibes:x"])
    assert bad.exit_code == 2 and "unknown source 'vibes:x'" in bad.output
    empty = runner.invoke(app, ["--warehouse", str(wh.root), "eval", "-d", str(export_dir)])
    assert empty.exit_code == 2 and "nothing to evaluate" in empty.output
