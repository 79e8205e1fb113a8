"""The `prm-data` command line: a typer app whose verbs live in `prm_data/commands/`.

Each module in COMMAND_MODULES exposes `register(app)`; adding a verb is one
line in that list. The global `--warehouse PATH` option (env PRM_DATA_WAREHOUSE,
default `warehouse/data`) picks the warehouse every verb reads and writes.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import typer

from prm_data.commands import EXIT_CODES_HELP

COMMAND_MODULES = [
    "prm_data.commands.query",
    "prm_data.commands.tables",
    "prm_data.commands.problems",
    "prm_data.commands.export",
    "prm_data.commands.train",
    "prm_data.commands.eval",
    "prm_data.commands.serve_sim",
    "prm_data.commands.judge_check",
    "prm_data.commands.report",
    "flows.commands",  # run, schedule (Prefect imported only when they run)
]

app = typer.Typer(
    name="prm-data",
    help="Synthesize process-reward (step-level) training data: problems, rollouts, labels, "
    "a DuckDB warehouse, Hub export and PRM training.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version as installed

        typer.echo(f"prm-data {installed('prm-data')}")
        raise typer.Exit(0)


@app.callback()
def main(
    ctx: typer.Context,
    warehouse: Path = typer.Option(
        None,
        "--warehouse",
        envvar="PRM_DATA_WAREHOUSE",
        help="Warehouse root directory (Parquet shards + prm.duckdb).",
        show_default="warehouse/data",
    ),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    from prm_data.warehouse import default_root

    ctx.obj = {"warehouse": warehouse if warehouse is not None else default_root(),
               "warehouse_explicit": warehouse is not None}


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


if __name__ == "__main__":
    app()
