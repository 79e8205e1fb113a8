"""Exports where several runs wrote a rollout's rows (tests/export_fixture.py otherwise): `processbench` takes
each step, final label, rollout row and problem row from the greatest run_id; `verifier_sft` takes each
step's tool check from the greatest run_id."""

from __future__ import annotations

import json
import shutil

import pytest
from export_fixture import RUN, STEPS, build_fixture_warehouse

from prm_data.export import ExportConfig, build_export
from prm_data.stepwise_rows import write_final_labels
from prm_data.warehouse import Warehouse


@pytest.fixture(scope="module")
def fixture_folder(tmp_path_factory):
    return build_fixture_warehouse(tmp_path_factory.mktemp("base") / "wh").root


@pytest.fixture
def wh(fixture_folder, tmp_path):
    """A fresh copy of the fixture warehouse (its folder holds only Parquet shards), for each test to change."""
    shutil.copytree(fixture_folder, tmp_path / "wh")
    return Warehouse(tmp_path / "wh")


def _final(run_id: str, rollout_id: str, labels: dict[int, bool]) -> list[dict]:
    return [{"run_id": run_id, "problem_id": STEPS[rollout_id][0], "rollout_id": rollout_id, "step_index": i,
             "policy": "consensus", "label": label, "value": None, "sources": ["judge_vote"], "kept": True}
            for i, label in labels.items()]


def _processbench(wh, **config) -> dict[str, dict]:
    dsd = build_export(wh, ExportConfig(formats=("processbench",), **config))["processbench"]
    return {r["rollout_id"]: r for split in dsd.values() for r in split}


def test_a_later_run_that_relabels_one_step_changes_only_that_steps_label(wh):
    write_final_labels(wh, _final("run-z1", "r-7", {1: True}), "run-z1", "final")  # r-7 was T F: label 1
    rows = _processbench(wh)
    assert rows["r-7"]["label"] == -1 and rows["r-7"]["steps"] == STEPS["r-7"][1]
    assert rows["r-2"]["label"] == 1  # untouched rollouts keep theirs
    only_fixture = _processbench(wh, run_id=RUN)
    assert only_fixture["r-7"]["label"] == 1


def test_a_step_rewritten_by_a_later_run_is_exported_with_its_new_text_in_order(wh):
    wh.write_shard("steps", [{"rollout_id": "r-2", "run_id": "run-z2", "problem_id": "p-1", "step_index": 1,
                              "text": "Step 2: 7 * 2 = 14."}], run_id="run-z2", shard="s")
    wh.write_shard("problems", [{"problem_id": "p-1", "run_id": "run-z2", "source": "bank",
                                 "question": "Mia has 3 apples (reworded).", "answer": "9"}], run_id="run-z2",
                   shard="p")
    rows = _processbench(wh)
    assert rows["r-2"]["steps"] == [STEPS["r-2"][1][0], "Step 2: 7 * 2 = 14.", STEPS["r-2"][1][2]]
    assert rows["r-2"]["problem"] == "Mia has 3 apples (reworded)."
    assert rows["r-2"]["label"] == 1


def test_a_rollout_relabelled_whole_takes_the_new_runs_labels_and_rollout_row(wh):
    pid, steps = STEPS["r-1"]
    wh.write_shard("rollouts", [{**r, "run_id": "run-z3", "is_correct": False, "policy_model": "other-policy"}
                                for r in wh.rows("SELECT * FROM rollouts WHERE rollout_id = 'r-1'")],
                   run_id="run-z3", shard="r")
    wh.write_shard("steps", [{"rollout_id": "r-1", "run_id": "run-z3", "problem_id": pid, "step_index": i,
                              "text": f"{t} (again)"} for i, t in enumerate(steps)], run_id="run-z3", shard="s")
    write_final_labels(wh, _final("run-z3", "r-1", {0: True, 1: False, 2: False}), "run-z3", "final")
    row = _processbench(wh)["r-1"]
    assert (row["label"], row["generator"], row["final_answer_correct"]) == (1, "other-policy", False)
    assert row["steps"] == [f"{t} (again)" for t in steps]


def test_where_two_runs_checked_a_step_the_critiques_carry_the_latest_runs_check(wh):
    def tool_labels(run_id: str, verdict: str, computed: str) -> None:
        check = {"check": "arithmetic", "claim": "7 * 2 = 14", "computed": computed, "claimed": "14",
                 "ok": computed == "14"}
        wh.write_shard("step_labels", [
            {"run_id": run_id, "problem_id": "p-1", "rollout_id": "r-1", "step_index": i, "labeler": "tool_verify",
             "labeler_version": "v1", "value": 1.0, "hard_label": True, "prompt_tokens": 0, "completion_tokens": 0,
             "calls": 0, "evidence": json.dumps({"verdict": verdict if i == 1 else "verified",
                                                 "checks": [check] if i == 1 else []})}
            for i in range(3)], run_id=run_id, shard="tool")

    tool_labels(RUN, "contradicted", "15")
    tool_labels("run-z1", "verified", "14")  # the later run's check of step 2 replaces the first one
    dsd = build_export(wh, ExportConfig(formats=("stepwise", "verifier_sft")))["verifier_sft"]
    critiques = [r["messages"][2]["content"] for split in dsd.values() for r in split if r["rollout_id"] == "r-1"]
    assert critiques  # r-1's final labels are T T T: only the later run's check agrees with them
    for critique in critiques:
        assert "Checking 7 * 2 = 14: it evaluates to 14 and the step claims 14, which holds." in critique
        assert "evaluates to 15" not in critique


def _both_ways(wh, **config) -> tuple[dict, dict]:
    """processbench built alone (every step gathered by query) and beside stepwise (rows it covers taken from it)."""
    alone = build_export(wh, ExportConfig(formats=("processbench",), **config))["processbench"]
    beside = build_export(wh, ExportConfig(formats=("stepwise", "processbench"), **config))["processbench"]
    return ({s: d.data.table for s, d in alone.items()}, {s: d.data.table for s, d in beside.items()})


@pytest.mark.parametrize("change", ["none", "relabel_step", "rewrite_step", "relabel_whole", "duplicate_step",
                                    "extra_label", "run_id"])
def test_processbench_beside_stepwise_is_the_processbench_built_alone(wh, change):
    """Where a stepwise row holds every step and label of its rollout, processbench takes them from it; in
    every other case (another run's step, label or rollout row, a duplicated step, a label of a step with no
    row) the rollout's steps are gathered again: either way the rows are the same."""
    pid, steps = STEPS["r-6"]
    config = {"run_id": RUN} if change == "run_id" else {}
    if change in ("relabel_step", "run_id"):
        write_final_labels(wh, _final("run-z1", "r-7", {1: True}), "run-z1", "final")
    if change == "rewrite_step":
        wh.write_shard("steps", [{"rollout_id": "r-6", "run_id": "run-z2", "problem_id": pid, "step_index": 1,
                                  "text": "Step 2: 16 / 4 = 4, again."}], run_id="run-z2", shard="s")
    if change == "relabel_whole":
        wh.write_shard("steps", [{"rollout_id": "r-6", "run_id": "run-z3", "problem_id": pid, "step_index": i,
                                  "text": f"{t} (again)"} for i, t in enumerate(steps)], run_id="run-z3", shard="s")
        write_final_labels(wh, _final("run-z3", "r-6", {0: True, 1: False}), "run-z3", "final")
    if change == "duplicate_step":
        wh.write_shard("steps", [{"rollout_id": "r-6", "run_id": RUN, "problem_id": pid, "step_index": 1,
                                  "text": steps[1]}], run_id=RUN, shard="again")
    if change == "extra_label":
        write_final_labels(wh, _final(RUN, "r-6", {0: True, 1: True, 2: False}), RUN, "final-extra")
    alone, beside = _both_ways(wh, **config)
    assert alone.keys() == beside.keys() and alone
    for split in alone:
        assert beside[split].equals(alone[split]), split
