"""`prm-data query "SQL"`: read-only SQL over the warehouse views.

Writes are refused before anything runs (exit code 2) and the query runs on a
connection that cannot write; see prm_data/sql_guard.py for both checks.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import Path

import typer

from prm_data.commands import EXIT_ERROR, EXIT_USAGE, console, fail, open_existing_warehouse


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def register(app: typer.Typer) -> None:
    app.command("query")(query)


def query(
    ctx: typer.Context,
    sql: str = typer.Argument(..., help="One read-only statement: SELECT, WITH, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="Output format."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the result to this file (required for parquet)."),
    param: list[str] = typer.Option(None, "--param", "-p",
                                    help="Value for the next `?` placeholder (text; cast in SQL, e.g. `?::INT`)."),
    max_rows: int = typer.Option(1000, "--max-rows", min=1, help="Rows shown by the table format."),
) -> None:
    """Run read-only SQL against the warehouse views and print or save the result.

    Example: prm-data query "SELECT source, count(*) FROM problems GROUP BY ALL" --format csv
    """
    import duckdb

    from prm_data.sql_guard import ReadOnlyViolation, run_read_only
    from prm_data.warehouse import WarehouseBusy

    if fmt == OutputFormat.parquet and output is None:
        fail("--format parquet needs --output FILE", EXIT_USAGE)
    try:
        result = run_read_only(open_existing_warehouse(ctx), sql, list(param or []))
    except ReadOnlyViolation as exc:
        fail(f"refused: {exc}", EXIT_USAGE)
    except WarehouseBusy as exc:
        fail(str(exc), EXIT_ERROR)
    except duckdb.Error as exc:
        fail(str(exc), EXIT_ERROR)
    write_result(result, fmt, output, max_rows)


def write_result(table, fmt: OutputFormat, output: Path | None, max_rows: int = 1000) -> None:
    """Render an Arrow table as a rich table, CSV, JSON (an array of objects) or Parquet.

    A file is written under a temporary name beside `output` and renamed when whole, so a reader never
    sees half of it; one that cannot be written is a one-line error (exit 1) and leaves nothing behind.
    """
    if fmt == OutputFormat.table:
        text = _render_table(table, max_rows, to_file=output is not None)
        if output is None:
            return
    elif fmt == OutputFormat.csv:
        text = _csv(table)
    elif fmt == OutputFormat.json:
        text = _json(table)
    if output is None:
        sys.stdout.write(text)
        return
    if not output.parent.is_dir():
        fail(f"cannot write --output {output}: no folder {output.parent}", EXIT_ERROR)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        if fmt == OutputFormat.parquet:
            import pyarrow.parquet as pq

            pq.write_table(table, tmp)
        else:
            tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        fail(f"cannot write --output {output}: {exc.strerror or exc}", EXIT_ERROR)
    finally:
        tmp.unlink(missing_ok=True)


def _plain(value):
    """A JSON-ready value: timestamps as ISO 8601, decimals and bytes as text."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _cell(value) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _csv(table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow([_cell(v) for v in row.values()])
    return buf.getvalue()


def _json(table) -> str:
    rows = [json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False) for row in table.to_pylist()]
    return "[\n" + ",\n".join(rows) + "\n]\n" if rows else "[]\n"


def _render_table(table, max_rows: int, to_file: bool) -> str:
    from rich.console import Console
    from rich.table import Table

    view = Table(show_lines=False, header_style="bold")
    for name in table.column_names:
        view.add_column(name, overflow="fold")
    for row in table.slice(0, max_rows).to_pylist():
        view.add_row(*[("NULL" if v is None else _cell(v)) for v in row.values()])
    hidden = table.num_rows - min(table.num_rows, max_rows)
    caption = f"{table.num_rows} row{'s' if table.num_rows != 1 else ''}"
    if hidden:
        caption += f", {hidden} not shown (raise --max-rows or use --format csv)"
    view.caption = caption
    if not to_file:
        console.print(view)
        return ""
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None).print(view)
    return buf.getvalue()
