"""The `prm-data` command line: a typer app whose verbs live in `prm_data/commands/`.

Each module in COMMAND_MODULES exposes `register(app)`; adding a verb is one
import and one entry in that list. This module is the application's one
composition point: the only module of `prm_data/` that imports `flows/` (for
`run` and `schedule`, which import Prefect only when they run). The global `--warehouse PATH` option (env PRM_DATA_WAREHOUSE,
default `warehouse/data`) picks the warehouse every verb reads and writes.
"""

from __future__ import annotations

import typer

from flows import commands as flow_commands  # run, schedule: Prefect is imported only when they run
from prm_data.commands import EXIT_CODES_HELP
from prm_data.commands import eval as eval_verb
from prm_data.commands import export, judge_check, problems, query, report, serve_sim, tables, train

COMMAND_MODULES = [query, tables, problems, export, train, eval_verb, serve_sim, judge_check, report, flow_commands]

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
    warehouse: str = typer.Option(  # a str, not a Path: Path("s3://b/wh") would be the folder "s3:/b/wh"
        None,
        "--warehouse",
        envvar="PRM_DATA_WAREHOUSE",
        help="Warehouse root directory (Parquet shards + prm.duckdb), a file:// URL, or an object store: "
        "s3://bucket/prefix, gs://bucket/prefix, az://container/prefix.",
        show_default="warehouse/data",
    ),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    from prm_data.commands import EXIT_USAGE, fail
    from prm_data.warehouse import default_root
    from prm_data.warehouse_root import UnsupportedWarehouseRoot, parse_root

    try:
        root = parse_root(warehouse) if warehouse is not None else default_root()
    except UnsupportedWarehouseRoot as err:
        fail(str(err), code=EXIT_USAGE)
    ctx.obj = {"warehouse": root, "warehouse_explicit": warehouse is not None}


for _module in COMMAND_MODULES:
    _module.register(app)


if __name__ == "__main__":
    app()
