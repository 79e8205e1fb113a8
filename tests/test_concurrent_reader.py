"""A reader in another process never sees a partial shard while a writer appends.

Every shard holds exactly SHARD_ROWS rows, so any count a reader observes
must be a multiple of it; a half-written file would show up as a query error
(no Parquet footer) or as a count off the grid. The reader runs in a separate
process (spawn, so it shares nothing with the writer), through both the
views-only prm.duckdb file opened read-only and an in-memory connection.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from pathlib import Path

import duckdb
import pytest

from prm_data.warehouse import Warehouse, retry_torn_reads

SHARD_ROWS = 300
QUESTION = "How many marbles are left after all of the trades? " * 4
COUNT_SQL = "SELECT count(*), count(DISTINCT problem_id), coalesce(sum(length(question)), 0) FROM problems"


def shard_rows(shard: int) -> list[dict]:
    return [{"problem_id": f"p{shard}-{i}", "run_id": "writer", "source": "test", "question": QUESTION,
             "answer": str(i), "reference_solution": "Step 1: count.\n\n" * 20} for i in range(SHARD_ROWS)]


def reader(root: str, retry: bool, stop, ready, observed, results) -> None:
    """Count rows over and over until told to stop; report every observation and error.

    With `retry`, reads go through `retry_torn_reads`, as every read in the library does.
    """
    warehouse = Warehouse(root)
    file_con = duckdb.connect(str(warehouse.db_path), read_only=True)
    memory_con = warehouse.connect()
    counts, errors = [], []
    ready.set()
    while not stop.is_set():
        for con in (file_con, memory_con):
            try:
                if retry:
                    row = retry_torn_reads(lambda: con.execute(COUNT_SQL).fetchall())[0]
                else:
                    row = con.execute(COUNT_SQL).fetchall()[0]
                counts.append(tuple(row))
            except Exception as exc:  # the test asserts this list is empty
                errors.append(f"{type(exc).__name__}: {exc}")
            observed.value += 1
    results.put({"counts": counts, "errors": errors})


def run_with_reader(root: Path, write, retry: bool = False) -> tuple[list[tuple], list[str]]:
    """Start the reader process, call `write(observed)`, stop the reader, return what it saw."""
    ctx = mp.get_context("spawn")
    stop, ready, observed, results = ctx.Event(), ctx.Event(), ctx.Value("i", 0), ctx.Queue()
    proc = ctx.Process(target=reader, args=(str(root), retry, stop, ready, observed, results))
    proc.start()
    try:
        assert ready.wait(60), "reader process did not start"
        write(observed)
        stop.set()
        out = results.get(timeout=60)
    finally:
        stop.set()
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
    assert proc.exitcode == 0
    return out["counts"], out["errors"]


def wait_for(observed, at_least: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while observed.value < at_least and time.monotonic() < deadline:
        time.sleep(0.005)


@pytest.mark.slow
def test_reader_in_another_process_only_sees_whole_shards_while_writer_appends(tmp_path):
    warehouse = Warehouse(tmp_path / "wh")
    warehouse.sync_views()
    written = []

    def append(observed):
        # Keep appending until the reader has looked many times, so reads interleave with writes.
        shard = 0
        while shard < 40 or (observed.value < 60 and shard < 400):
            warehouse.write_shard("problems", shard_rows(shard), run_id="writer", shard=f"s{shard:04d}")
            shard += 1
        written.append(shard)
        wait_for(observed, observed.value + 4)  # a few reads of the final state

    counts, errors = run_with_reader(tmp_path / "wh", append)
    total = written[0] * SHARD_ROWS

    assert errors == []
    assert len(counts) >= 20
    for n, distinct, chars in counts:
        assert n % SHARD_ROWS == 0, f"reader saw {n} rows: a partial shard"
        assert distinct == n
        assert chars == n * len(QUESTION)
    seen = sorted({c[0] for c in counts})
    assert len([n for n in seen if 0 < n < total]) >= 2, f"reads did not interleave with writes: {seen}"
    assert counts[-1][0] == total
    assert [c[0] for c in counts[::2]] == sorted(c[0] for c in counts[::2]), "a file reader saw rows vanish"


@pytest.mark.slow
def test_library_reads_never_see_a_shard_half_replaced(tmp_path):
    """Replacing a shard (a stage rerun) under a running query tears the read: DuckDB opens
    the file once for the schema and again for the data. Library reads retry such reads."""
    warehouse = Warehouse(tmp_path / "wh")
    warehouse.sync_views()
    warehouse.write_shard("problems", shard_rows(0), run_id="writer", shard="same")

    def rewrite(observed):
        # Until the reader has read 60 times under the rewrites: bounded by time, not by rounds, as
        # retried reads are slow on a loaded machine (CI once saw 18 reads in 400 rounds).
        start, deadline = observed.value, time.monotonic() + 120
        rounds = 0
        while rounds < 40 or (observed.value - start < 60 and time.monotonic() < deadline):
            warehouse.write_shard("problems", shard_rows(rounds % 2), run_id="writer", shard="same")
            rounds += 1

    counts, errors = run_with_reader(tmp_path / "wh", rewrite, retry=True)
    assert errors == []
    assert len(counts) >= 20
    assert {c[0] for c in counts} == {SHARD_ROWS}


def test_a_truncated_shard_would_be_caught_by_the_reader_query(tmp_path):
    """Control for the tests above: a half-written .parquet file makes the count query fail
    (and the torn-read retries of library reads do not hide it)."""
    warehouse = Warehouse(tmp_path / "wh")
    good = warehouse.write_shard("problems", shard_rows(0), run_id="writer", shard="good")
    data = good.read_bytes()
    (good.parent / "half.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(duckdb.Error):
        warehouse.connect().execute(COUNT_SQL).fetchall()
    with pytest.raises(duckdb.Error):
        warehouse.scalar(COUNT_SQL)


OPENER = """
import sys, time, duckdb
path, count = sys.argv[1], int(sys.argv[2])
failures = []
for i in range(count):
    try:
        con = duckdb.connect(path, read_only=True)
        con.execute("SELECT count(*) FROM problems").fetchall()
        con.close()
    except Exception as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
    time.sleep(0.02)  # spread the opens over several `prm-data query` calls
print(len(failures))
print("\\n".join(failures[:5]))
"""


@pytest.mark.slow
def test_prm_data_query_never_locks_out_a_read_only_session(tmp_path):
    """`prm-data query` in a loop beside another process opening prm.duckdb read-only (as
    `duckdb -readonly` does) 500 times: no open fails, and every query answers."""
    import subprocess
    import sys

    root = tmp_path / "wh"
    warehouse = Warehouse(root)
    warehouse.write_shard("problems", shard_rows(0), run_id="writer", shard="s0")
    warehouse.sync_views()  # as `prm-data problems add` leaves it
    query = [sys.executable, "-c", "import sys; sys.argv[0] = 'prm-data'; from prm_data.cli import app; app()",
             "--warehouse", str(root), "query", "SELECT count(*) AS n FROM problems", "-f", "csv"]
    answers, stop = [], threading.Event()

    def query_loop():
        while not stop.is_set() or len(answers) < 3:
            done = subprocess.run(query, capture_output=True, text=True, timeout=120)
            answers.append((done.returncode, done.stdout, done.stderr[-300:]))

    loop = threading.Thread(target=query_loop)
    loop.start()
    try:
        opener = subprocess.run([sys.executable, "-c", OPENER, str(warehouse.db_path), "500"],
                                capture_output=True, text=True, timeout=600)
    finally:
        stop.set()
        loop.join()
    assert opener.returncode == 0, opener.stderr
    failed, *messages = opener.stdout.strip().split("\n")
    assert int(failed) == 0, messages
    assert all(a[:2] == (0, f"n\n{SHARD_ROWS}\n") for a in answers), [a for a in answers if a[0] != 0][:3]
