"""`prm-data report`: the plots of the whole warehouse (every run, over the nights) or of one export's rollouts.

See prm_data/warehouse_report.py for what each plot shows; `report.json`
beside them holds the numbers behind every plot.
"""

from __future__ import annotations

from pathlib import Path

import typer

from prm_data.commands import EXIT_ERROR, console, fail, open_existing_warehouse


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    ctx: typer.Context,
    out: Path = typer.Option(Path("reports/warehouse"), "--out", "-o", help="Folder for the PNGs and report.json."),
    export: Path = typer.Option(None, "--export", help="Only the rollouts of this export folder."),
) -> None:
    """Plot label balance by step, steps per rollout, first errors, agreement with kappa, calibration and cost.

    Example: prm-data report --out reports/all; prm-data report --export exports/v1 --out reports/v1
    """
    from prm_data.warehouse_report import export_rollout_ids, write_warehouse_report

    warehouse = open_existing_warehouse(ctx)
    try:
        ids = export_rollout_ids(export) if export is not None else None
    except FileNotFoundError as exc:
        fail(str(exc), EXIT_ERROR)
    paths = write_warehouse_report(warehouse, out, ids)
    console.print(f"report of {'the export ' + str(export) if export else 'the whole warehouse'}: "
                  + ", ".join(paths), markup=False, highlight=False, soft_wrap=True)
