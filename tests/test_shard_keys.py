"""`Warehouse.read_keyed`: the rows of the shards that hold some keys, found by an index that follows the files."""

from __future__ import annotations

import pytest

from prm_data.schema import TABLES
from prm_data.warehouse import Warehouse


def step(run_id: str, rollout: str, i: int, text: str = "t") -> dict:
    return {"run_id": run_id, "problem_id": "p-1", "rollout_id": rollout, "step_index": i, "text": text}


def keyed(wh: Warehouse, run_id: str | None, ids: list[str]) -> list[tuple]:
    rows = wh.read_keyed("steps", run_id, "rollout_id", ids).to_pylist()
    return sorted((r["run_id"], r["rollout_id"], r["step_index"], r["text"]) for r in rows)


@pytest.fixture()
def wh(tmp_path) -> Warehouse:
    wh = Warehouse(tmp_path / "wh")
    wh.write_shard("steps", [step("run-a", "r-1", 0), step("run-a", "r-1", 1), step("run-a", "r-2", 0)],
                   run_id="run-a", shard="s1")
    wh.write_shard("steps", [step("run-a", "r-3", 0)], run_id="run-a", shard="s2")
    wh.write_shard("steps", [step("run-b", "r-1", 0)], run_id="run-b", shard="s1")
    return wh


def test_the_rows_of_the_keys_asked_for_come_from_the_runs_shards_only(wh):
    assert keyed(wh, "run-a", ["r-1", "r-3", "r-9"]) == [("run-a", "r-1", 0, "t"), ("run-a", "r-1", 1, "t"),
                                                         ("run-a", "r-3", 0, "t")]


def test_without_a_run_every_runs_shards_are_looked_in(wh):
    assert keyed(wh, None, ["r-1"]) == [("run-a", "r-1", 0, "t"), ("run-a", "r-1", 1, "t"), ("run-b", "r-1", 0, "t")]


def test_a_shard_written_after_a_lookup_is_found_by_the_next(wh):
    assert keyed(wh, "run-a", ["r-4"]) == []
    wh.write_shard("steps", [step("run-a", "r-4", 0)], run_id="run-a", shard="s3")
    assert keyed(wh, "run-a", ["r-4"]) == [("run-a", "r-4", 0, "t")]


def test_a_replaced_shard_is_read_again_and_its_old_keys_are_forgotten(wh):
    assert keyed(wh, "run-a", ["r-3"]) == [("run-a", "r-3", 0, "t")]
    wh.write_shard("steps", [step("run-a", "r-5", 0, "new")], run_id="run-a", shard="s2")
    assert keyed(wh, "run-a", ["r-3"]) == []
    assert keyed(wh, "run-a", ["r-5"]) == [("run-a", "r-5", 0, "new")]


def test_a_removed_shard_is_forgotten(wh):
    assert keyed(wh, "run-a", ["r-3"]) != []
    wh.shard_path("steps", "run-a", "s2").unlink()
    assert keyed(wh, "run-a", ["r-3"]) == []


def test_a_run_without_shards_of_the_table_gives_no_row_with_the_tables_columns(wh):
    rows = wh.read_keyed("steps", "run-c", "rollout_id", ["r-1"])
    assert rows.num_rows == 0 and rows.schema.names == TABLES["steps"].names
