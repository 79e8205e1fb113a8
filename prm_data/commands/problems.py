"""`prm-data problems add SOURCE`: load problems into the warehouse.

SOURCE is a file (.jsonl/.json/.csv/.tsv/.parquet), a local dataset directory,
`hf:NAME[:CONFIG]`, `bank:COUNT[:DIFFICULTY[:SEED]]` or `code_bank:COUNT[:BLOCKS[:SEED]]`. Malformed rows are
written to `failures` (stage `source`) and summarised; problems already in the
warehouse are skipped. One `runs` row records what was done.

Exit code: 0 when the source gave at least one valid problem (added now, or
already present from an earlier add: rerunning is not an error), even if some
rows were skipped as malformed; 1 when it gave none, or could not be read; 2 for
bad options.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import datetime, timezone
from enum import Enum

import typer

from prm_data.commands import EXIT_ERROR, EXIT_USAGE, console, fail, open_warehouse
from prm_data.sources.validate import FieldMapping

problems_app = typer.Typer(help="Problem sets: load them into the warehouse.", no_args_is_help=True)
_DEFAULTS = {name: f.default for name, f in FieldMapping.model_fields.items()}
SHOWN_REASONS = 15


class AnswerFormat(str, Enum):
    plain = "plain"
    gsm8k = "gsm8k"
    boxed = "boxed"


def register(app: typer.Typer) -> None:
    app.add_typer(problems_app, name="problems")


def new_run_id(verb: str) -> str:
    return f"{verb}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


@problems_app.command("add")
def add(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="FILE, dataset DIR, hf:NAME[:CONFIG], bank:COUNT[:DIFFICULTY[:SEED]] "
                                           "or code_bank:COUNT[:BLOCKS[:SEED]]."),
    question_field: str = typer.Option(_DEFAULTS["question_field"], help="Column holding the question."),
    answer_field: str = typer.Option(_DEFAULTS["answer_field"], help="Column holding the answer."),
    answer_format: AnswerFormat = typer.Option(
        _DEFAULTS["answer_format"], help="plain: as is; gsm8k: number after '####'; boxed: last \\boxed{}."),
    id_field: str = typer.Option(None, help="Column holding a problem id (default: hash of the question)."),
    solution_field: str = typer.Option(None, help="Column holding a reference solution."),
    split: str = typer.Option(_DEFAULTS["split"], help="Dataset split (Hugging Face sources)."),
    limit: int = typer.Option(None, min=1, help="Read at most this many records."),
    max_chars: int = typer.Option(_DEFAULTS["max_chars"], min=1, help="Size limit per text field."),
    run_id: str = typer.Option(None, help="Run id to file the rows under (default: a fresh one)."),
    record_format: str = typer.Option("auto", "--format", help="Record format: auto (by the first record's keys), "
                                      "problem (the question/answer fields), humaneval or mbpp (code problems)."),
) -> None:
    """Add problems from a file, a dataset or the bundled bank; report what was added and skipped."""
    from pydantic import ValidationError

    from prm_data.failures import FailureLog
    from prm_data.sources import SourceError, ingest_problems, load_problems

    try:
        mapping = FieldMapping(question_field=question_field, answer_field=answer_field,
                               answer_format=answer_format.value, id_field=id_field, solution_field=solution_field,
                               split=split, limit=limit, max_chars=max_chars, format=record_format)
    except ValidationError as exc:
        fail(str(exc), EXIT_USAGE)
    run_id = run_id or new_run_id("problems-add")
    warehouse = open_warehouse(ctx)
    failures = FailureLog(run_id)
    started = datetime.now(timezone.utc)
    try:
        rows = load_problems(source, mapping, run_id=run_id, failures=failures)
    except SourceError as exc:
        fail(str(exc), EXIT_ERROR)
    except ValueError as exc:  # e.g. bank settings that cannot give enough distinct problems
        fail(f"{source}: {exc}", EXIT_ERROR)
    result = ingest_problems(warehouse, rows, run_id)
    failures.flush(warehouse, shard="source")
    summary = {"added": len(result.added), "already_present": len(result.already_present),
               "skipped": len(failures), "reasons": dict(Counter(r["reason"] for r in failures.rows))}
    warehouse.write_shard("runs", [{
        "run_id": run_id, "flow": "problems add", "status": "completed" if rows else "failed",
        "started_at": started, "finished_at": datetime.now(timezone.utc),
        "config_json": json.dumps({"source": source, "mapping": mapping.model_dump()}),
        "failures": len(failures), "summary": json.dumps(summary),
    }], run_id=run_id, shard="run")
    _report(source, run_id, result, failures.rows)
    _refresh_views(warehouse)
    if not rows:
        fail(f"{source} gave no valid problem", EXIT_ERROR)


def _refresh_views(warehouse) -> None:
    """Keep prm.duckdb usable from the duckdb CLI; the data is already safe if this waits out."""
    from prm_data.warehouse import WarehouseBusy

    try:
        warehouse.sync_views(wait_s=2.0)
    except WarehouseBusy as exc:
        console.print(f"note: views in prm.duckdb not refreshed ({exc})", style="dim", markup=False)


def _report(source: str, run_id: str, result, failure_rows: list[dict]) -> None:
    from rich.table import Table

    added = len(result.added)
    console.print(f"[bold]{source}[/bold] (run {run_id}): added [green]{added}[/green] problem{'' if added == 1 else 's'}, "
                  f"{len(result.already_present)} already in the warehouse, "
                  f"[{'red' if failure_rows else 'green'}]{len(failure_rows)}[/] skipped as malformed", soft_wrap=True)
    if not failure_rows:
        return
    by_reason: dict[str, list[str]] = {}
    for row in failure_rows:
        by_reason.setdefault(row["reason"], []).append((row["item_id"] or "").split("#", 1)[-1])
    view = Table(title="skipped rows", header_style="bold")
    view.add_column("count", justify="right")
    view.add_column("reason", overflow="fold")
    view.add_column("where", overflow="fold")
    ranked = sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    for reason, wheres in ranked[:SHOWN_REASONS]:
        shown = ", ".join(wheres[:3]) + (f", ... (+{len(wheres) - 3})" if len(wheres) > 3 else "")
        view.add_row(str(len(wheres)), reason, shown)
    if len(ranked) > SHOWN_REASONS:
        view.caption = f"{len(ranked) - SHOWN_REASONS} more reasons not shown"
    console.print(view)
    console.print(f"details: prm-data query \"SELECT item_id, reason, input FROM failures WHERE run_id = '{run_id}'\"",
                  markup=False, highlight=False, soft_wrap=True)
