"""One run's view of the warehouse (`for_run(warehouse, run_id)`): its own shards, every problem, nothing else."""

from __future__ import annotations

import pytest

from prm_data.run_warehouse import for_run
from prm_data.warehouse import Warehouse


def label(run_id: str, rollout: str, step: int, hard: bool | None, labeler: str = "mc_value") -> dict:
    return {"run_id": run_id, "problem_id": "p-1", "rollout_id": rollout, "step_index": step, "labeler": labeler,
            "labeler_version": "1", "hard_label": hard, "prompt_tokens": 0, "completion_tokens": 0, "calls": 0}


@pytest.fixture()
def two_runs(tmp_path) -> Warehouse:
    wh = Warehouse(tmp_path / "wh")
    wh.write_shard("problems", [{"problem_id": "p-1", "run_id": "run-a", "source": "bank", "question": "q",
                                 "answer": "1"}], run_id="run-a", shard="problems")
    wh.write_shard("step_labels", [label("run-a", "r-1", 0, True), label("run-a", "r-1", 1, False)],
                   run_id="run-a", shard="s1")
    wh.write_shard("step_labels", [label("run-b", "r-1", 0, False), label("run-b", "r-2", 0, True)],
                   run_id="run-b", shard="s1")
    return wh


def test_a_runs_view_of_a_per_run_table_holds_only_its_own_rows(two_runs):
    run_b = for_run(two_runs, "run-b")
    assert run_b.rows("SELECT run_id, rollout_id, step_index FROM step_labels ORDER BY ALL") == [
        {"run_id": "run-b", "rollout_id": "r-1", "step_index": 0}, {"run_id": "run-b", "rollout_id": "r-2",
                                                                   "step_index": 0}]
    assert two_runs.scalar("SELECT count(*) FROM step_labels") == 4  # the warehouse's views are every run's


def test_a_runs_view_reads_the_shared_problems_whichever_run_wrote_them(two_runs):
    assert for_run(two_runs, "run-b").rows("SELECT problem_id, run_id FROM problems") == [
        {"problem_id": "p-1", "run_id": "run-a"}]


def test_the_convenience_views_of_a_run_are_computed_over_its_rows_only(two_runs):
    fe = for_run(two_runs, "run-a").rows("SELECT rollout_id, first_error_step FROM first_error ORDER BY ALL")
    assert fe == [{"rollout_id": "r-1", "first_error_step": 1}]
    assert for_run(two_runs, "run-b").rows("SELECT rollout_id, first_error_step FROM first_error ORDER BY ALL") == [
        {"rollout_id": "r-1", "first_error_step": 0}, {"rollout_id": "r-2", "first_error_step": -1}]


def test_a_table_the_run_has_not_written_yet_is_empty_with_its_columns(two_runs):
    judgments = for_run(two_runs, "run-b").query("SELECT * FROM judgments")
    assert judgments.num_rows == 0 and "judge" in judgments.schema.names


def test_shards_the_run_writes_after_its_view_was_made_show_at_once(two_runs):
    run_b = for_run(two_runs, "run-b")
    assert run_b.scalar("SELECT count(*) FROM final_labels") == 0
    two_runs.write_shard("final_labels", [{"run_id": "run-b", "problem_id": "p-1", "rollout_id": "r-2",
                                           "step_index": 0, "policy": "consensus", "label": True, "kept": True}],
                         run_id="run-b", shard="s1")  # the table's first shard of the run
    two_runs.write_shard("step_labels", [label("run-b", "r-3", 0, True)], run_id="run-b", shard="s2")
    assert run_b.scalar("SELECT count(*) FROM final_labels") == 1
    assert run_b.scalar("SELECT count(*) FROM step_labels") == 3


def test_a_runs_queries_never_open_another_runs_shards(two_runs):
    other = two_runs.tables_dir / "step_labels" / "run_id=run-a" / "s1.parquet"
    other.write_bytes(b"not a parquet file")  # any read of it fails
    assert for_run(two_runs, "run-b").scalar("SELECT count(*) FROM step_labels") == 2
    with pytest.raises(Exception, match="s1.parquet"):
        two_runs.scalar("SELECT count(*) FROM step_labels")


def test_the_views_file_keeps_every_runs_views_when_synced_from_a_runs_view(two_runs):
    import duckdb

    path = for_run(two_runs, "run-b").sync_views()
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM step_labels").fetchone()[0] == 4
    finally:
        con.close()


def test_a_run_id_that_is_no_folder_name_is_refused(two_runs):
    with pytest.raises(ValueError, match="run ids must match"):
        for_run(two_runs, "../run-a")
