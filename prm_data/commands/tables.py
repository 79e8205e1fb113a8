"""`prm-data tables`: every table and view of the warehouse with its row count."""

from __future__ import annotations

import json
from enum import Enum

import typer

from prm_data.commands import console, open_existing_warehouse


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
        shards = sum(1 for p in (warehouse.tables_dir / name).glob("run_id=*/*.parquet"))
        out.append({"name": name, "kind": "table", "rows": counts.get(name, 0), "shards": shards})
    for name in sorted(set(counts) - set(TABLES)):
        out.append({"name": name, "kind": "view", "rows": counts[name], "shards": None})
    return out


def tables(
    ctx: typer.Context,
    fmt: TablesFormat = typer.Option(TablesFormat.table, "--format", "-f", help="Output format."),
) -> None:
    """List the warehouse's tables and views with row counts (and shards per table)."""
    from rich.table import Table

    warehouse = open_existing_warehouse(ctx)
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
