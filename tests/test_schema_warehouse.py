"""The schema module and the warehouse: every table round-trips through Parquet and the views."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prm_data.schema import TABLES, to_table
from prm_data.warehouse import Warehouse

CONVENIENCE_VIEWS = {"first_error", "label_agreement", "problem_stats"}


def sample_value(field: pa.Field, i: int):
    """A distinct, non-null value of the field's type for row `i`."""
    t = field.type
    if pa.types.is_string(t):
        return f"{field.name}-{i}-ünï"
    if pa.types.is_int32(t) or pa.types.is_int64(t):
        return 7 * i + 3
    if pa.types.is_float64(t):
        return 0.25 + i
    if pa.types.is_boolean(t):
        return i % 2 == 0
    if pa.types.is_timestamp(t):
        return datetime(2024, 5, 1 + i, 12, 30, 15, 123456, tzinfo=timezone.utc)
    if pa.types.is_list(t):
        return [sample_value(pa.field(field.name, t.value_type), i + k) for k in range(i + 2)]
    raise AssertionError(f"no sample for {field.name}: {t}; extend sample_value")


def sample_rows(table: str, n: int = 3) -> list[dict]:
    return [{f.name: sample_value(f, i) for f in TABLES[table]} for i in range(n)]


@pytest.fixture()
def warehouse(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "wh")


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_column_round_trips_through_parquet_and_its_view(warehouse, table):
    rows = sample_rows(table)
    path = warehouse.write_shard(table, rows, run_id="run-a", shard="s1")

    assert pq.read_schema(path).remove_metadata() == TABLES[table].remove_metadata()
    assert pq.read_table(path).to_pylist() == rows
    back = warehouse.rows(f"SELECT * FROM {table} ORDER BY {TABLES[table].names[0]}")
    assert back == rows


@pytest.mark.parametrize("table", sorted(TABLES))
def test_empty_table_view_has_the_schema_columns_and_types(warehouse, table):
    result = warehouse.query(f"SELECT * FROM {table}")
    assert result.num_rows == 0
    assert result.schema.names == TABLES[table].names
    for f in TABLES[table]:
        assert _same_type(result.schema.field(f.name).type, f.type), f.name


def _same_type(got: pa.DataType, want: pa.DataType) -> bool:
    # DuckDB names the UTC zone "Etc/UTC"; the instant is the same.
    if pa.types.is_timestamp(got) and pa.types.is_timestamp(want):
        utc = {"UTC", "Etc/UTC"}
        return got.unit == want.unit and (got.tz == want.tz or {got.tz, want.tz} <= utc)
    return got == want


def test_nulls_survive_in_nullable_columns(warehouse):
    row = {f.name: (sample_value(f, 0) if not f.nullable else None) for f in TABLES["rollouts"]}
    warehouse.write_shard("rollouts", [row], run_id="r", shard="nulls")
    assert warehouse.rows("SELECT * FROM rollouts") == [row]


def test_missing_required_column_is_rejected_with_its_name():
    row = sample_rows("step_labels", 1)[0]
    del row["labeler"]
    with pytest.raises(ValueError, match=r"step_labels\.labeler is required"):
        to_table("step_labels", [row])


def test_unknown_column_is_rejected():
    row = sample_rows("problems", 1)[0] | {"colour": "red"}
    with pytest.raises(ValueError, match="unknown columns.*colour"):
        to_table("problems", [row])


def test_wrong_type_is_rejected_with_table_and_column():
    row = sample_rows("completions", 1)[0] | {"prefix_steps": "three"}
    with pytest.raises(ValueError, match=r"completions\.prefix_steps"):
        to_table("completions", [row])


def test_writing_the_same_shard_name_replaces_it(warehouse):
    rows = sample_rows("problems", 3)
    warehouse.write_shard("problems", rows, run_id="r", shard="same")
    warehouse.write_shard("problems", rows[:1], run_id="r", shard="same")
    assert warehouse.scalar("SELECT count(*) FROM problems") == 1
    assert warehouse.has_shard("problems", "r", "same")


def test_shards_from_several_runs_are_unioned(warehouse):
    warehouse.write_shard("problems", sample_rows("problems", 2), run_id="r1", shard="a")
    warehouse.write_shard("problems", sample_rows("problems", 3), run_id="r2", shard="a")
    assert warehouse.scalar("SELECT count(*) FROM problems") == 5
    assert (warehouse.tables_dir / "problems" / "run_id=r2" / "a.parquet").exists()


def test_no_temporary_files_are_left_after_writes(warehouse):
    for i in range(5):
        warehouse.write_shard("failures", sample_rows("failures", 2), run_id="r", shard=f"s{i}")
    leftovers = [p for p in warehouse.tables_dir.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_shard_names_with_path_characters_are_refused(warehouse):
    with pytest.raises(ValueError, match="must match"):
        warehouse.write_shard("problems", sample_rows("problems", 1), run_id="r", shard="../escape")


def test_sync_views_file_is_readable_by_a_plain_read_only_duckdb_connection(warehouse):
    for table in TABLES:
        warehouse.write_shard(table, sample_rows(table, 2), run_id="r", shard="s")
    path = warehouse.sync_views()

    con = duckdb.connect(str(path), read_only=True)
    try:
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert views == set(TABLES) | CONVENIENCE_VIEWS
        for table in TABLES:
            assert con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(2,)], table
        for view in CONVENIENCE_VIEWS:
            con.execute(f"SELECT * FROM {view}").fetchall()
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE x (a INT)")
    finally:
        con.close()


def test_views_in_the_file_see_shards_written_after_sync(warehouse):
    path = warehouse.sync_views()
    warehouse.write_shard("problems", sample_rows("problems", 4), run_id="later", shard="s")
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM problems").fetchall() == [(4,)]
    finally:
        con.close()


def test_row_counts_cover_tables_and_views(warehouse):
    warehouse.write_shard("judgments", sample_rows("judgments", 3), run_id="r", shard="s")
    counts = warehouse.row_counts()
    assert set(counts) == set(TABLES) | CONVENIENCE_VIEWS
    assert counts["judgments"] == 3
    assert counts["problems"] == 0


def _label(rollout: str, step: int, labeler: str, good: bool | None, tokens: int = 10) -> dict:
    return {"run_id": "r", "problem_id": "p1", "rollout_id": rollout, "step_index": step, "labeler": labeler,
            "labeler_version": "v1", "value": None, "hard_label": good, "confidence": None,
            "prompt_tokens": tokens, "completion_tokens": tokens, "calls": 1, "evidence": None}


def test_first_error_view_gives_first_negative_step_per_rollout_and_labeler(warehouse):
    labels = [_label("a", 0, "mc", True), _label("a", 1, "mc", True), _label("a", 2, "mc", False),
              _label("a", 3, "mc", False), _label("a", 0, "judge", False), _label("b", 0, "mc", True),
              _label("b", 1, "mc", None)]
    warehouse.write_shard("step_labels", labels, run_id="r", shard="s")
    got = {(r["rollout_id"], r["labeler"]): r["first_error_step"]
           for r in warehouse.rows("SELECT * FROM first_error")}
    assert got == {("a", "mc"): 2, ("a", "judge"): 0, ("b", "mc"): -1}


def test_label_agreement_view_counts_shared_steps(warehouse):
    labels = [_label("a", i, "mc", g) for i, g in enumerate([True, True, False, False])]
    labels += [_label("a", i, "judge", g) for i, g in enumerate([True, False, False, None])]
    warehouse.write_shard("step_labels", labels, run_id="r", shard="s")
    [row] = warehouse.rows("SELECT * FROM label_agreement")
    assert (row["labeler_a"], row["labeler_b"], row["steps"]) == ("judge", "mc", 3)
    assert row["agreement"] == pytest.approx(2 / 3)


def test_problem_stats_view_gives_pass_rate_and_tokens(warehouse):
    problem = sample_rows("problems", 1)[0] | {"problem_id": "p1"}
    warehouse.write_shard("problems", [problem], run_id="r", shard="p")
    rollouts = []
    for i, correct in enumerate([True, False, True, True]):
        r = sample_rows("rollouts", 1)[0]
        rollouts.append(r | {"rollout_id": f"r{i}", "problem_id": "p1", "is_correct": correct,
                             "prompt_tokens": 5, "completion_tokens": 20})
    warehouse.write_shard("rollouts", rollouts, run_id="r", shard="r")
    warehouse.write_shard("step_labels", [_label("r0", 0, "mc", True, tokens=7)], run_id="r", shard="l")
    [row] = warehouse.rows("SELECT * FROM problem_stats")
    assert row["rollouts"] == 4
    assert row["pass_rate"] == pytest.approx(0.75)
    assert row["rollout_tokens"] == 100
    assert row["label_tokens"] == 14
    assert row["label_calls"] == 1


def duckdb_cli() -> str:
    """The plain duckdb CLI binary (PyPI's `duckdb-cli`, a dev extra), found beside this Python or on PATH."""
    import shutil
    import sys
    from pathlib import Path

    beside = Path(sys.executable).with_name("duckdb")
    found = str(beside) if beside.exists() else shutil.which("duckdb")
    if found is None:
        pytest.fail("the duckdb CLI is not installed: pip install -e '.[dev]' (it brings duckdb-cli)")
    return found


def test_the_plain_duckdb_cli_opens_the_views_file_and_reads_a_view(warehouse):
    import subprocess

    warehouse.write_shard("problems", sample_rows("problems", 3), run_id="r", shard="s")
    path = warehouse.sync_views()
    cli = duckdb_cli()
    version = subprocess.run([cli, "-version"], capture_output=True, text=True, timeout=60).stdout
    out = subprocess.run([cli, "-readonly", "-csv", str(path), "-c",
                          "SELECT count(*) AS n, min(problem_id) AS first FROM problems"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"duckdb CLI {version}: {out.stderr}"
    assert out.stdout.split() == ['n,first', '3,"problem_id-0-ünï"']  # CSV quotes the non-ASCII text


def test_views_are_written_once_and_a_stale_file_is_replaced_even_while_held(warehouse):
    path = warehouse.sync_views()
    inode = path.stat().st_ino
    reader = duckdb.connect(str(path), read_only=True)  # as `duckdb -readonly` holds it
    try:
        assert warehouse.sync_views() == path and path.stat().st_ino == inode  # current: not rewritten
    finally:
        reader.close()
    path.unlink()
    import subprocess
    import sys

    # the file as the previous version wrote it (newest storage, no fingerprint), still held for
    # writing by a duckdb session in another process
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, duckdb\nfrom prm_data.warehouse import Warehouse\n"
        "con = duckdb.connect(sys.argv[1])\n"
        "for stmt in Warehouse(sys.argv[2]).view_sql(): con.execute(stmt)\n"
        "print('ready', flush=True)\ntime.sleep(120)"), str(path), str(warehouse.root)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert warehouse.views_file_fingerprint() is None
        assert warehouse.sync_views(wait_s=1) == path  # replaced beside the session, not waited for
        assert warehouse.views_file_fingerprint() == warehouse.views_fingerprint()
    finally:
        holder.kill()
        holder.wait(10)
