"""Shared pieces of the reliability tests: a run config over HTTP, the CLI as a process tree,
table snapshots that ignore what legitimately differs between runs, a reader process
that polls the warehouse while runs write it, and a pause inside a shard write.

Nothing here replaces a function of prm_data: runs are the real `prm-data run`
in a subprocess against the real OpenAI-compatible sim server
(prm_data/serve_sim.py). The one intervention, `install_write_pause`, wraps
pyarrow's `write_table` so that one chosen shard write stops halfway (half of
the file's bytes on disk, fsynced) and waits to be killed: a deterministic
way to SIGKILL a process in the middle of a shard write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# Columns that differ between two runs producing the same data: ids of the run, clocks,
# latencies, random failure ids, and the server address recorded with a cached answer.
VOLATILE = {"run_id", "created_at", "started_at", "finished_at", "latency_s", "failure_id"}
# The natural key of each table: no two rows may share it.
KEYS = {
    "problems": ("problem_id",),
    "run_problems": ("run_id", "problem_id"),
    "rollouts": ("rollout_id",),
    "steps": ("rollout_id", "step_index"),
    "completions": ("completion_id",),
    "tree_nodes": ("node_id",),
    "step_labels": ("rollout_id", "step_index", "labeler"),
    "judgments": ("judgment_id",),
    "rubrics": ("rubric_id",),
    "final_labels": ("rollout_id", "step_index", "policy"),
    "stepwise_rows": ("rollout_id", "policy"),
    "llm_cache": ("request_key",),
    "runs": ("run_id",),
}
CONTENT_TABLES = ("problems", "run_problems", "rollouts", "steps", "completions", "tree_nodes", "step_labels",
                  "judgments", "final_labels", "stepwise_rows", "llm_cache")


def http_config(path: Path, url: str, *, name: str = "night", source: str = "bank:6:2:5", shard_size: int = 2,
                rollouts: int = 4, labelers=("mc_value", "tool_verify", "judge_vote"), mc_k: int = 4,
                judge_samples: int = 3, backend: dict | None = None, **top) -> Path:
    """A small run config whose policy and judge are the sim server at `url` (openai backend)."""
    server = {"kind": "openai", "base_urls": [url], "api_key_env": None, "continuation": "completions",
              **(backend or {})}
    cfg = {
        "name": name,
        "problems": {"source": source},
        "shard_size": shard_size,
        "rollouts": {"n": rollouts},
        "policy": {**server, "model": "sim-policy"},
        "judges": {"judge": {**server, "model": "sim-judge"}},
        "labeling": {"labelers": list(labelers), "mc_value": {"k": mc_k},
                     "judge_vote": {"mode": "per_step", "judges": [{"name": "judge", "samples": judge_samples}]}},
        "export": {"out_dir": "exports/night"},
        **top,
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def cli_command(*args: str, write_pause: tuple[int, Path] | None = None) -> list[str]:
    """`prm-data ARGS` as a Python command line; with `write_pause=(n, marker)`, the n-th
    shard write of the process stops halfway (see `install_write_pause`)."""
    boot = "import sys\nsys.argv[0] = 'prm-data'\n"
    if write_pause is not None:
        n, marker = write_pause
        boot += (f"sys.path.insert(0, {str(TESTS)!r})\nimport reliability_support\n"
                 f"reliability_support.install_write_pause({int(n)}, {str(marker)!r})\n")
    boot += "from prm_data.cli import app\napp()\n"
    return [sys.executable, "-c", boot, *args]


def start(command: list[str], cwd: Path, log: Path, env: dict | None = None) -> subprocess.Popen:
    """Start a command in its own process group (so the whole tree can be killed), output to `log`."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("PRM_DATA_WAREHOUSE", None)
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the process and every process it started (its process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return  # already gone
    finally:
        proc.wait(timeout=30)


def run_to_end(command: list[str], cwd: Path, log: Path, timeout: float = 240, env: dict | None = None) -> int:
    proc = start(command, cwd, log, env)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise AssertionError(f"{command[3:]} did not finish in {timeout} s; log:\n{log.read_text()[-3000:]}")


def wait_until(predicate, proc: subprocess.Popen, log: Path, timeout: float = 120, what: str = "") -> None:
    """Poll `predicate` every few ms while `proc` runs; fail if it exits or time runs out first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run exited ({proc.returncode}) before {what}; log:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            kill_tree(proc)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.003)


# ----------------------------------------------------------------- snapshots
def _plain(value):
    if isinstance(value, float):
        return round(value, 12)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def table_snapshot(warehouse, table: str) -> list[str]:
    """The table's rows as sorted JSON strings, without the columns in VOLATILE.

    `llm_cache.metadata` loses its `endpoint` (the server's address differs between runs).
    """
    rows = warehouse.rows(f'SELECT * FROM "{table}"')
    out = []
    for row in rows:
        clean = {k: _plain(v) for k, v in row.items() if k not in VOLATILE}
        if table == "llm_cache" and clean.get("metadata"):
            meta = json.loads(clean["metadata"])
            meta.pop("endpoint", None)
            clean["metadata"] = meta
        out.append(json.dumps(clean, sort_keys=True, default=str))
    return sorted(out)


def duplicate_keys(warehouse, table: str) -> list[tuple]:
    cols = ", ".join(KEYS[table])
    return [tuple(r.values()) for r in warehouse.rows(
        f'SELECT {cols}, count(*) AS n FROM "{table}" GROUP BY ALL HAVING count(*) > 1 LIMIT 5')]


def stored_request_keys(root: Path) -> set[str]:
    """Every request key whose answer is on disk: committed to the request cache's store."""
    from prm_data.llm.cache import stored_request_keys as stored
    from prm_data.warehouses import open_warehouse

    return stored(open_warehouse(root))


# ------------------------------------------------------------- the reader
def poll_warehouse(root: str, stop, ready, results) -> None:
    """Runs in its own process until `stop`: reads every visible Parquet file whole and counts
    every table through the library's views; reports what it saw and every error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prm_data.schema import TABLES
    from prm_data.warehouse import retry_torn_reads
    from prm_data.warehouses import open_warehouse

    tables_dir = Path(root) / "tables"
    warehouse = open_warehouse(root)
    errors: list[str] = []
    rounds, files_read, totals = 0, 0, []
    ready.set()
    while not stop.is_set():
        for path in sorted(tables_dir.rglob("*.parquet")):
            try:
                data = path.read_bytes()  # one open: a consistent version of the file
            except FileNotFoundError:
                continue  # a shard deleted between listing and reading is not a torn one
            try:
                pq.read_table(pa.BufferReader(data))
                files_read += 1
            except Exception as exc:  # the test asserts there are none
                errors.append(f"{path.relative_to(tables_dir)}: {type(exc).__name__}: {exc}")
        try:
            con = warehouse.connect()
            try:
                # as every library read does: retry a read torn by a shard *replaced* mid-query
                counts = [retry_torn_reads(lambda t=t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall())[0][0]
                          for t in TABLES]
            finally:
                con.close()
            totals.append(sum(counts))
        except Exception as exc:  # the test asserts there are none
            errors.append(f"query: {type(exc).__name__}: {exc}")
        rounds += 1
    results.put({"errors": errors, "rounds": rounds, "files_read": files_read, "totals": totals})


class WarehouseReader:
    """`with WarehouseReader(root) as reader:` polls in another process; `reader.report` after."""

    def __init__(self, root: Path):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.root = root
        self.report: dict | None = None

    def __enter__(self) -> WarehouseReader:
        self.stop, ready, self.results = self.ctx.Event(), self.ctx.Event(), self.ctx.Queue()
        self.proc = self.ctx.Process(target=poll_warehouse, args=(str(self.root), self.stop, ready, self.results))
        self.proc.start()
        assert ready.wait(60), "reader process did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        try:
            self.report = self.results.get(timeout=60)
        finally:
            self.proc.join(30)
            if self.proc.is_alive():
                self.proc.kill()


# ------------------------------------------------------- pause a shard write
def install_write_pause(nth: int, marker: str) -> None:
    """Make this process's `nth` shard write stop halfway and wait to be killed.

    Counts writes of warehouse shards (temporary files under a `run_id=` folder).
    The chosen write puts the first half of the Parquet bytes into the temporary
    file, fsyncs it, writes `marker` (holding the temporary file's path) and sleeps.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    real = pq.write_table
    seen = [0]

    def write_table(table, where, *args, **kwargs):
        name = str(getattr(where, "name", where))
        if "run_id=" in name and name.endswith(".tmp"):
            seen[0] += 1
            if seen[0] == nth:
                buf = pa.BufferOutputStream()
                real(table, buf, *args, **kwargs)
                data = buf.getvalue().to_pybytes()
                where.write(data[: len(data) // 2])
                where.flush()
                os.fsync(where.fileno())
                Path(f"{marker}.tmp").write_text(name)
                os.replace(f"{marker}.tmp", marker)  # the test polls for the marker: never let it see it empty
                while True:
                    time.sleep(1)
        return real(table, where, *args, **kwargs)

    pq.write_table = write_table
