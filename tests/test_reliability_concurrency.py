"""Concurrency on one warehouse: runs side by side, readers during runs, and who must wait.

- Two `prm-data run`s of different configs write one warehouse at the same
  time while `prm-data query` reads it over and over: each run's tables equal
  those of the same run made alone, and every query succeeds.
- The same config started twice at once: one process works on the run, the
  other is told the run is in progress (exit 1), instead of both working on it.
- `prm-data problems add` of overlapping files at the same time: no problem is
  stored twice.
- A duckdb session holding `prm.duckdb` open for writing (the duckdb CLI does
  by default) while a run finishes: the run completes and `prm-data query`
  answers (neither needs the file for writing).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from prm_data.sources.bank import generate_bank
from prm_data.warehouse import Warehouse
from reliability_support import CONTENT_TABLES, cli_command, duplicate_keys, run_to_end, start, table_snapshot

pytestmark = pytest.mark.slow


def sim_config(path: Path, name: str, source: str, n: int, k: int, latency_s: float = 0.0) -> Path:
    sim = {"sim": {"latency_s": latency_s}} if latency_s else {}
    path.write_text(yaml.safe_dump({
        "name": name, "problems": {"source": source}, "shard_size": 3, "rollouts": {"n": n},
        **({"policy": {"kind": "sim", "model": "sim-policy", **sim},
            "judges": {"judge": {"kind": "sim", "model": "sim-judge", **sim}}} if sim else {}),
        "labeling": {"labelers": ["mc_value", "tool_verify", "judge_vote"], "mc_value": {"k": k},
                     "judge_vote": {"mode": "per_step", "judges": [{"name": "judge", "samples": 3}]}},
        "export": {"out_dir": f"exports/{name}"}}))
    return path


def run_args(root: Path, config: Path, *extra: str) -> list[str]:
    return cli_command("--warehouse", str(root), "run", "-c", str(config), "--serial", *extra)


def run_rows(wh: Warehouse, table: str, run_id: str) -> list[str]:
    """table_snapshot restricted to one run (llm_cache: the answers that run paid for)."""
    return table_snapshot(_RunFilter(wh, run_id), table)


class _RunFilter:
    """A warehouse whose `rows` sees one run's rows only (problems: every row, they are shared)."""

    def __init__(self, wh: Warehouse, run_id: str):
        self.wh, self.run_id = wh, run_id

    def rows(self, sql: str):
        table = sql.split('"')[1]
        if table == "problems":
            return self.wh.rows(sql)
        return self.wh.rows(f'SELECT * FROM "{table}" WHERE run_id = ?', [self.run_id])


def test_two_runs_at_once_write_what_each_writes_alone_while_queries_read(tmp_path):
    # Each simulated answer takes 0.15 s, as a server's would (about 7 s a run, waiting, not computing), so
    # the runs last several `prm-data query` calls however fast this machine computes them; the delay
    # changes no stored row (not part of any request key), and the runs made alone use the same configs
    configs = {"alpha": sim_config(tmp_path / "alpha.yaml", "alpha", "bank:9:2:1", n=4, k=4, latency_s=0.15),
               "beta": sim_config(tmp_path / "beta.yaml", "beta", "bank:9:3:2", n=3, k=3, latency_s=0.15)}
    shared = tmp_path / "shared"
    Warehouse(shared)  # it exists before the readers start: read-only verbs refuse a missing warehouse
    procs = {name: start(run_args(shared, cfg), tmp_path, tmp_path / f"{name}.log") for name, cfg in configs.items()}
    readers = [[], []]  # two readers at once, each querying over and over while the runs write

    def read(queries: list) -> None:
        while any(p.poll() is None for p in procs.values()):
            queries.append(subprocess.run(cli_command("--warehouse", str(shared), "query", "--format", "json",
                                                      "SELECT count(*) AS n FROM step_labels"),
                                          cwd=tmp_path, capture_output=True, text=True, timeout=120))

    threads = [threading.Thread(target=read, args=(queries,)) for queries in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, proc in procs.items():
        assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    # alone, one after the other, in warehouses of their own
    for name, cfg in configs.items():
        assert run_to_end(run_args(tmp_path / name, cfg), tmp_path, tmp_path / f"{name}-alone.log") == 0

    queries = readers[0] + readers[1]
    assert len(queries) >= 3
    assert [q.returncode for q in queries] == [0] * len(queries), [q.stderr for q in queries if q.returncode]
    for mine in readers:  # each reader's counts never go down: a query never sees a shard half-written
        seen = [json.loads(q.stdout)[0]["n"] for q in mine]
        assert seen == sorted(seen), seen
    assert max(json.loads(q.stdout)[0]["n"] for q in queries) > 0  # reads went on while labels were written
    wh = Warehouse(shared)
    runs = {r["run_id"]: r["status"] for r in wh.rows("SELECT run_id, status FROM runs")}
    assert sorted(runs.values()) == ["completed", "completed"]
    # llm_cache is left out: answers are shared by all runs, and two runs started together may each
    # pay for the same request (both run the judge probes); the cache then keeps both, harmlessly.
    tables = [t for t in CONTENT_TABLES if t != "llm_cache"]
    for table in tables:
        assert duplicate_keys(wh, table) == [], table
    for name in configs:
        alone = Warehouse(tmp_path / name)
        [run_id] = [r for r in runs if r.startswith(name)]
        [alone_id] = [r["run_id"] for r in alone.rows("SELECT run_id FROM runs")]
        for table in tables:
            if table == "problems":
                continue
            assert run_rows(wh, table, run_id) == run_rows(alone, table, alone_id), f"{name}: {table}"
    assert wh.scalar("SELECT count(*) FROM problems") == 18


def test_the_same_run_started_twice_at_once_is_worked_on_by_one_process(tmp_path):
    config = sim_config(tmp_path / "c.yaml", "twice", "bank:6:2:4", n=3, k=3)
    root = tmp_path / "wh"
    procs = [start(run_args(root, config), tmp_path, tmp_path / f"{i}.log") for i in range(2)]
    codes = sorted(p.wait(timeout=300) for p in procs)
    logs = [" ".join((tmp_path / f"{i}.log").read_text().split()) for i in range(2)]
    assert codes == [0, 1], logs
    [refused] = [log for log in logs if "error:" in log]
    assert "is in progress in process" in refused and "--new-run" in refused, refused
    runs = Warehouse(root).rows("SELECT run_id, status FROM runs")
    assert [r["status"] for r in runs] == ["completed"]


def test_problems_added_at_the_same_time_are_stored_once(tmp_path):
    bank = generate_bank(40, seed=3, difficulty=2)
    files = []
    for i in range(3):  # overlapping slices: 0-19, 10-29, 20-39
        path = tmp_path / f"part{i}.jsonl"
        path.write_text("".join(json.dumps({"question": p.question, "answer": str(p.answer)}) + "\n"
                                for p in bank[10 * i: 10 * i + 20]))
        files.append(path)
    root = tmp_path / "wh"
    Warehouse(root)
    procs = [start(cli_command("--warehouse", str(root), "problems", "add", str(f)), tmp_path,
                   tmp_path / f"add{i}.log") for i, f in enumerate(files)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    wh = Warehouse(root)
    assert duplicate_keys(wh, "problems") == []
    assert wh.scalar("SELECT count(*) FROM problems") == 40


def test_a_duckdb_session_holding_the_views_file_makes_nothing_fail_silently(tmp_path):
    """A duckdb session holding prm.duckdb for writing (the CLI without -readonly) blocks neither
    `prm-data query` (it opens a private copy of the views) nor a run (it replaces the file beside it)."""
    config = sim_config(tmp_path / "c.yaml", "held", "bank:3:2:6", n=2, k=2)
    root = tmp_path / "wh"
    Warehouse(root).sync_views()
    session = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                                "print('ready', flush=True); time.sleep(600)", str(root / "prm.duckdb")],
                               stdout=subprocess.PIPE, text=True)  # as `duckdb warehouse/data/prm.duckdb` would
    try:
        assert session.stdout.readline().strip() == "ready"
        query = subprocess.run(cli_command("--warehouse", str(root), "query", "SELECT count(*) AS n FROM problems",
                                           "-f", "csv"), cwd=tmp_path, capture_output=True, text=True, timeout=120)
        run = subprocess.run(run_args(root, config), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        session.kill()
        session.wait(10)
    assert query.returncode == 0 and query.stdout == "n\n0\n", query.stderr
    assert run.returncode == 0, run.stderr[-3000:]
    assert [r["status"] for r in Warehouse(root).rows("SELECT status FROM runs")] == ["completed"]
