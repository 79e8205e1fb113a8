"""`prm-data eval`: ProcessBench F1 and best-of-N accuracy of a PRM checkpoint, labelers and judges.

Results go to the warehouse's `eval_results` table and, with --plot, a PNG.
See prm_data/evaluate.py and docs/training.md.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import typer

from prm_data.commands import EXIT_ERROR, EXIT_USAGE, console, fail, open_warehouse


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


def evaluate(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", "-d", help="Export folder or Hub repo with a processbench set."),
    checkpoint: str = typer.Option(None, "--checkpoint", "-c", help="PRM checkpoint written by prm-data train."),
    sources: list[str] = typer.Option(None, "--source", "-s",
                                      help="labeler:NAME[@VERSION] or judge:NAME (repeat)."),
    thresholds: list[float] = typer.Option(None, "--threshold", "-t",
                                           help="PRM P(good) below which a step is an error (repeat; 0.5)."),
    split: str = typer.Option("test", help="processbench split, or `all`."),
    rerank: bool = typer.Option(True, "--rerank/--no-rerank", help="Best-of-N over the problems' rollouts."),
    plot: Path = typer.Option(None, "--plot", help="Write a PNG of the results here."),
    run_id: str = typer.Option(None, "--run-id", help="Run id of the eval_results rows (default: new)."),
) -> None:
    """Score a PRM and/or labelers on the exported ProcessBench-style set.

    Example: prm-data eval -d exports/v1 -c checkpoints/prm -s labeler:mc_value -s judge:sim-judge --plot eval.png
    """
    from prm_data.evaluate import run_eval

    if checkpoint is None and not sources:
        fail("nothing to evaluate: give --checkpoint and/or --source", EXIT_USAGE)
    run_id = run_id or f"eval-{uuid.uuid4().hex[:12]}"
    try:
        rows = run_eval(open_warehouse(ctx), dataset, run_id, checkpoint=checkpoint, sources=sources or (),
                        thresholds=thresholds or (0.5,), split=split, rerank=rerank,
                        plot_path=str(plot) if plot else None)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc), EXIT_ERROR)
    for r in rows:
        value = "n/a" if r["value"] is None else f"{r['value']:.4f}"
        at = "" if r["threshold"] is None else f" @ {r['threshold']:g}"
        console.print(f"{r['benchmark']:<12} {r['evaluated']}{at}: {r['metric']} = {value} (n={r['n']})",
                      markup=False, highlight=False)
    console.print(f"eval_results run {run_id}" + (f"; plot {plot}" if plot else ""))
