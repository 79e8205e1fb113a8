"""Closing a run, the same way for the serial runner and the Prefect `store` flow.

The summary and report plots are made, the `runs` row is marked completed with
timings, costs and the summary, and the views in prm.duckdb are refreshed for
the duckdb CLI (a note, not a failure, when another session holds the file).
"""

from __future__ import annotations

from datetime import datetime

from prm_data.config import RunConfig
from prm_data.pipeline.report import write_report
from prm_data.pipeline.runs import write_run
from prm_data.pipeline.summary import run_summary
from prm_data.warehouse import Warehouse, WarehouseBusy


def close_run(config: RunConfig, run_id: str, started_at: datetime, timings: dict, usage: dict) -> dict:
    summary = run_summary(config, run_id, timings, usage)
    summary["report"] = write_report(config, run_id)
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
        Warehouse(config.warehouse).sync_views(wait_s=wait_s)
    except WarehouseBusy as exc:
        return f"views in prm.duckdb not refreshed (new shards show anyway: the views are globs): {exc}"
    return None
