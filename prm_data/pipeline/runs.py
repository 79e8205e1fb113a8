"""Run records: which run to (re)start, and the `runs` row that describes it.

A run id is `<config name>-<UTC date>-<labeling version>-<n>`. Starting a run
resumes the latest unfinished run of the same labeling version (a crashed
night picks up where it stopped) unless a new one is asked for. The `runs`
row is written at start (status running) and replaced at the end (completed
or failed), with the config, git sha, package versions, timings and costs.

A process working on a run holds the run's lock (`locks/run-<id>.lock`) from
the `running` row to the final one; a second process asked to work on the same
run (the same config started twice, a cron firing while last night's run still
goes on) stops with `RunInProgress` instead of doing the same work at once.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from prm_data.config import RunConfig
from prm_data.llm.cache import paid_by_run
from prm_data.provenance import git_sha, package_versions
from prm_data.run_warehouse import for_run
from prm_data.warehouse import ProcessLock, WarehouseBusy
from prm_data.warehouses import open_warehouse

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CLAIMS: dict[tuple[str, str], ProcessLock] = {}  # (warehouse root, run id) -> the lock this process holds


class RunInProgress(WarehouseBusy):
    """Another living process is working on this run."""


def claim_run(config: RunConfig, run_id: str) -> None:
    """Hold the run's lock for this process (idempotent); RunInProgress if another process has it."""
    wh = open_warehouse(config.warehouse)
    key = (str(wh.root), run_id)
    if key in _CLAIMS:
        return
    lock = wh.process_lock(f"run-{_safe(run_id)}")  # a lease on an object store (prm_data/storage/lease.py)
    if not lock.acquire():
        raise RunInProgress(f"run {run_id} is in progress in process {lock.holder()}: let it finish, "
                            "or start a separate run with --new-run")
    _CLAIMS[key] = lock


def release_run(config: RunConfig, run_id: str) -> None:
    lock = _CLAIMS.pop((str(open_warehouse(config.warehouse).root), run_id), None)
    if lock is not None:
        lock.release()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"


def resolve_run_id(config: RunConfig, new: bool = False, run_id: str | None = None) -> str:
    """The run to work on: the given id, else the latest unfinished run of this version, else a new id."""
    if run_id:
        return run_id
    wh = open_warehouse(config.warehouse)
    version = config.labeling_version()
    # the `runs` shards alone (one small file per run), not the views over every table (issue 21)
    rows = wh.read_files("runs", wh.run_files("runs", None), "config_version = ? AND flow = 'nightly'",
                         [version]).select(["run_id", "status", "started_at", "finished_at"]).to_pylist()
    # newest first: started_at DESC NULLS LAST, then finished_at DESC NULLS FIRST (two stable sorts)
    rows.sort(key=lambda r: (r["finished_at"] is None, r["finished_at"] or _EPOCH), reverse=True)
    rows.sort(key=lambda r: (r["started_at"] is not None, r["started_at"] or _EPOCH), reverse=True)
    latest: dict[str, str] = {}
    for r in rows:
        latest.setdefault(r["run_id"], r["status"])
    if not new:
        for rid, status in latest.items():
            if status != "completed":
                return rid
    prefix = f"{_safe(config.name)}-{datetime.now(timezone.utc):%Y%m%d}-{version}"
    n = 1 + sum(1 for rid in latest if rid.startswith(prefix))
    return f"{prefix}-{n}"


def write_run(config: RunConfig, run_id: str, status: str, started_at: datetime,
              timings: dict | None = None, usage: dict | None = None, failures: int | None = None,
              summary: dict | None = None) -> Path:
    """Write the run's `runs` row; `running` claims the run for this process, a final status releases it."""
    if status == "running":
        claim_run(config, run_id)
    total = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cache_hits": 0, "cache_misses": 0}
    for u in (usage or {}).values():
        for k in total:
            total[k] += int(u.get(k, 0))
    if status == "running":
        paid = {}
    else:  # the summary counted it already when there is one
        paid = {f"paid_{k}": v for k, v in ((summary or {}).get("paid") or paid_by_run(
            open_warehouse(config.warehouse), run_id)).items()}
    row = {
        "run_id": run_id, "flow": "nightly", "status": status, "started_at": started_at,
        "finished_at": None if status == "running" else datetime.now(timezone.utc),
        "config_json": config.model_dump_json(), "config_version": config.labeling_version(),
        "git_sha": git_sha(), "package_versions": json.dumps(package_versions()),
        "timings": json.dumps(timings or {}), "failures": failures,
        "summary": json.dumps(summary or {}, default=str), **total, **paid,
    }
    path = open_warehouse(config.warehouse).write_shard("runs", [row], run_id=run_id, shard="run")
    if status != "running":
        release_run(config, run_id)
    return path


def run_started_at(config: RunConfig, run_id: str) -> datetime | None:
    rows = for_run(open_warehouse(config.warehouse), run_id).rows("SELECT min(started_at) AS t FROM runs WHERE run_id = ?", [run_id])
    return rows[0]["t"] if rows and rows[0]["t"] is not None else None
