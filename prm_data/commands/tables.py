"""`prm-data tables`: every table and view of the warehouse with its row count; `--columns` (or a name) its columns."""

from __future__ import annotations

import json
from enum import Enum

import typer

from prm_data.commands import EXIT_USAGE, console, fail, open_existing_warehouse


class TablesFormat(str, Enum):
    table = "table"
    json = "json"


def register(app: typer.Typer) -> None:
    app.command("tables")(tables)


def table_summary(warehouse) -> list[dict]:
    """One entry per table (schema order) then per convenience view: name, kind, rows, shards."""
    from prm_data.schema import TABLES

    counts = warehouse.row_counts()
    out = []
    for name in TABLES:
        shards = len(warehouse.run_files(name, None))
        out.append({"name": name, "kind": "table", "rows": counts.get(name, 0), "shards": shards})
    for name in sorted(set(counts) - set(TABLES)):
        out.append({"name": name, "kind": "view", "rows": counts[name], "shards": None})
    return out


def table_columns(warehouse, names: list[str] | None = None) -> list[dict]:
    """name, column, type and nullable of every column of the tables (from prm_data/schema.py, the one
    definition) and views (as DuckDB derives them; nullable unknown), or of `names` only."""
    from prm_data.schema import TABLES

    rows = [{"name": t, "column": f.name, "type": str(f.type), "nullable": f.nullable}
            for t, schema in TABLES.items() for f in schema]
    rows += [{**r, "nullable": None} for r in warehouse.rows(
        "SELECT table_name AS name, column_name AS column, data_type AS type FROM information_schema.columns "
        "WHERE NOT list_contains(?::VARCHAR[], table_name) ORDER BY table_name, ordinal_position", [list(TABLES)])]
    known = sorted({r["name"] for r in rows})
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        fail(f"no table or view {', '.join(map(repr, unknown))}; the warehouse has {', '.join(known)}", EXIT_USAGE)
    return [r for r in rows if not names or r["name"] in names]


def tables(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="Show the columns of these tables or views."),
    columns: bool = typer.Option(False, "--columns", "-c", help="Show every table's and view's columns and types."),
    fmt: TablesFormat = typer.Option(TablesFormat.table, "--format", "-f", help="Output format."),
) -> None:
    """List the warehouse's tables and views with row counts (and shards per table), or their columns.

    Examples: prm-data tables; prm-data tables final_labels first_error; prm-data tables --columns -f json
    """
    from rich.table import Table

    warehouse = open_existing_warehouse(ctx)
    if names or columns:
        cols = table_columns(warehouse, names)
        if fmt == TablesFormat.json:
            typer.echo(json.dumps(cols, indent=2))
            return
        view = Table(title=f"columns in {warehouse.root}", header_style="bold")
        for header in ("name", "column", "type", "nullable"):
            view.add_column(header)
        for c in cols:
            view.add_row(c["name"], c["column"], c["type"], {True: "yes", False: "no", None: ""}[c["nullable"]])
        console.print(view)
        return
    summary = table_summary(warehouse)
    if fmt == TablesFormat.json:
        typer.echo(json.dumps(summary, indent=2))
        return
    view = Table(title=f"warehouse {warehouse.root}", header_style="bold")
    view.add_column("name")
    view.add_column("kind")
    view.add_column("rows", justify="right")
    view.add_column("shards", justify="right")
    for entry in summary:
        view.add_row(entry["name"], entry["kind"], str(entry["rows"]),
                     "" if entry["shards"] is None else str(entry["shards"]))
    console.print(view)
