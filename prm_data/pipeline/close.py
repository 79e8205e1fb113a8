"""Opening and closing a run, the same way for the serial runner and the Prefect flows.

`open_run` picks the run (resuming the latest unfinished one of the same
labeling version unless a new one is asked for), claims it and marks it
running. `close_run` makes the summary and the report plots, marks the `runs`
row completed with timings, costs and the summary, and refreshes the views in
prm.duckdb for the duckdb CLI (a note, not a failure, when another session
holds the file).
"""

from __future__ import annotations

from datetime import datetime, timezone

from prm_data.config import RunConfig
from prm_data.pipeline.report import write_report
from prm_data.pipeline.runs import resolve_run_id, run_started_at, write_run
from prm_data.pipeline.summary import run_summary
from prm_data.warehouse import WarehouseBusy
from prm_data.warehouses import open_warehouse


def open_run(config: RunConfig, run_id: str | None = None, new_run: bool = False) -> tuple[str, datetime]:
    """(run id, started at) of the run to work on, marked running (and claimed by this process)."""
    run_id = resolve_run_id(config, new=new_run, run_id=run_id)
    started = run_started_at(config, run_id) or datetime.now(timezone.utc)
    write_run(config, run_id, "running", started)
    return run_id, started


def close_run(config: RunConfig, run_id: str, started_at: datetime, timings: dict, usage: dict) -> dict:
    summary = run_summary(config, run_id, timings, usage)
    summary["report"] = write_report(config, run_id, summary["agreement"], summary["costs"], summary["sanity"])
    write_run(config, run_id, "completed", started_at, timings, usage, summary["failures_total"], summary)
    note = refresh_views(config)
    if note:
        summary.setdefault("notes", []).append(note)
    return summary


def refresh_views(config: RunConfig, wait_s: float = 5.0) -> str | None:
    """Refresh the views in prm.duckdb for the duckdb CLI; a note instead of a failure when it is held.

    The run's data is already in its shards: a duckdb session holding the file
    (the duckdb CLI opens it for writing) must not turn a finished run into a failed one.
    """
    try:
        open_warehouse(config.warehouse).sync_views(wait_s=wait_s)
    except WarehouseBusy as exc:
        return f"views in prm.duckdb not refreshed (new shards show anyway: the views are globs): {exc}"
    return None
