"""label_quality reads a run's kept final labels and tool verdicts from a real warehouse."""

from __future__ import annotations

from prm_data.run_quality import format_labeled_rollout, goals_met, label_quality, labeled_rollouts
from prm_data.warehouse import Warehouse

RUN = "run-a"


def final(rollout, step, label, kept=True, run=RUN):
    return {"run_id": run, "problem_id": "p1", "rollout_id": rollout, "step_index": step, "policy": "hybrid",
            "label": label, "value": None, "sources": ["mc_value"], "kept": kept,
            "drop_reason": None if kept else "duplicate"}


def step_label(rollout, step, labeler, good, run=RUN):
    return {"run_id": run, "problem_id": "p1", "rollout_id": rollout, "step_index": step, "labeler": labeler,
            "labeler_version": "v1", "value": float(good), "hard_label": good, "confidence": 1.0,
            "prompt_tokens": 0, "completion_tokens": 0, "calls": 0, "evidence": "{}"}


def rollout(rid, correct, run=RUN):
    return {"rollout_id": rid, "run_id": run, "problem_id": "p1", "policy_model": "m", "sample_index": 0,
            "text": "Step 1: ...", "answer_status": "correct" if correct else "incorrect", "is_correct": correct,
            "num_steps": 2}


def warehouse_with_labels(tmp_path) -> Warehouse:
    """Three kept rollouts, one dropped, and another run's rows that must not count."""
    wh = Warehouse(tmp_path / "wh")
    wh.write_shard("final_labels", [
        final("r1", 0, True), final("r1", 1, False),                       # tool-contradicted step 1: bad
        final("r2", 0, False), final("r2", 1, False), final("r2", 2, False),  # wrong from its first step
        final("r3", 0, True),                                              # tool-contradicted but good
        final("r4", 0, False, kept=False),                                 # dropped: not counted
    ], run_id=RUN)
    wh.write_shard("final_labels", [final("x1", 0, False, run="run-b")], run_id="run-b")
    wh.write_shard("step_labels", [
        step_label("r1", 0, "mc_value", True), step_label("r1", 1, "mc_value", False),
        step_label("r1", 1, "tool_verify", False),
        step_label("r2", 0, "mc_value", False), step_label("r2", 0, "tool_verify", True),
        step_label("r3", 0, "mc_value", True), step_label("r3", 0, "tool_verify", False),
        step_label("r4", 0, "tool_verify", False),
    ], run_id=RUN)
    wh.write_shard("rollouts", [rollout("r1", True), rollout("r2", False), rollout("r3", True),
                                rollout("r4", False)], run_id=RUN)
    return wh


def test_the_figures_count_only_the_runs_kept_labels(tmp_path):
    q = label_quality(warehouse_with_labels(tmp_path), RUN)
    assert (q["kept_rollouts"], q["first_step_bad"], q["first_step_bad_share"]) == (3, 1, 0.3333)
    assert (q["final_labels"], q["good_share"]) == (6, 0.3333)
    assert (q["tool_contradicted_steps"], q["tool_contradicted_labeled_good"]) == (2, 1)
    assert q["every_tool_contradiction_labeled_bad"] is False
    assert (q["mc_tool_steps"], q["mc_tool_agreement"]) == (3, 0.3333)
    assert q["rollout_pass_rate"] == 0.5


def test_goals_are_judged_against_the_issue_thresholds(tmp_path):
    q = label_quality(warehouse_with_labels(tmp_path), RUN)
    assert goals_met(q) == {"first_step_bad_share": True, "every_tool_contradiction_labeled_bad": False,
                            "good_share": True}
    assert goals_met({**q, "first_step_bad_share": 0.79, "good_share": 0.9})["first_step_bad_share"] is False


def test_a_run_with_no_labels_gives_none_not_zero(tmp_path):
    q = label_quality(Warehouse(tmp_path / "empty"), "no-such-run")
    assert q["kept_rollouts"] == 0 and q["first_step_bad_share"] is None and q["good_share"] is None
    assert q["every_tool_contradiction_labeled_bad"] is True and q["rollout_pass_rate"] is None


def test_labeled_rollouts_show_each_kept_step_with_its_label_and_evidence(tmp_path):
    wh = warehouse_with_labels(tmp_path)
    wh.write_shard("problems", [{"problem_id": "p1", "run_id": RUN, "source": "bank", "question": "Q?",
                                 "answer": "5"}], run_id=RUN)
    wh.write_shard("steps", [{"rollout_id": r, "run_id": RUN, "problem_id": "p1", "step_index": i,
                              "text": f"{r} step {i}"} for r, n in (("r1", 2), ("r2", 3), ("r3", 1), ("r4", 1))
                             for i in range(n)], run_id=RUN)
    shown = {r["rollout_id"]: r for r in labeled_rollouts(wh, RUN, limit=10)}
    assert sorted(shown) == ["r1", "r2", "r3"]  # r4 was dropped
    assert [(s["label"], s["mc_value"], s["tool_ok"]) for s in shown["r1"]["steps"]] == [
        (True, 1.0, None), (False, 0.0, False)]
    text = format_labeled_rollout(shown["r1"])
    assert "(MC 0.00, tool contradicted) r1 step 1" in text and "`     good` (MC 1.00, tool no check)" in text
    assert len(labeled_rollouts(wh, RUN, limit=2)) == 2


def test_the_command_prints_the_figures_and_the_rollouts(tmp_path, capsys):
    from prm_data.run_quality import main

    wh = warehouse_with_labels(tmp_path)
    wh.write_shard("problems", [{"problem_id": "p1", "run_id": RUN, "source": "bank", "question": "Q?",
                                 "answer": "5"}], run_id=RUN)
    wh.write_shard("steps", [{"rollout_id": "r1", "run_id": RUN, "problem_id": "p1", "step_index": i,
                              "text": f"r1 step {i}"} for i in range(2)], run_id=RUN)
    assert main([str(wh.root)]) == 0
    out = capsys.readouterr().out
    assert "\"bank_reference\"" in out
    assert "\"run_id\": \"run-a\"" in out and '"first_step_bad_share": 0.3333' in out and "**Q?** (answer 5" in out
    assert main([str(tmp_path / "empty")]) == 1
