"""`prm-data eval`: ProcessBench F1 and best-of-N accuracy of a PRM checkpoint, labelers and judges.

The dataset is a prm-data export (its processbench config; sources are read
from the warehouse's labels) or an outside ProcessBench-style set (a JSONL,
JSON or Parquet file or a local dataset folder with problem, steps, label;
the named labelers are then run on its steps and their labels stored under the
eval's run id). Results go to the warehouse's `eval_results` table and, with
--plot, a PNG. See prm_data/evaluate.py, prm_data/eval_outside.py and docs/training.md.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import typer

from prm_data.commands import (EXIT_ERROR, EXIT_USAGE, config_error, console, fail, open_existing_warehouse,
                               open_warehouse)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


def evaluate(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", "-d",
                                help="Export folder or Hub repo with a processbench set, or an outside "
                                "ProcessBench-style JSONL/Parquet file or dataset folder."),
    checkpoint: str = typer.Option(None, "--checkpoint", "-c", help="PRM checkpoint written by prm-data train."),
    sources: list[str] = typer.Option(None, "--source", "-s",
                                      help="labeler:NAME[@VERSION] or judge:NAME (repeat); an unknown one is "
                                      "refused with the list of valid ones."),
    thresholds: list[float] = typer.Option(None, "--threshold", "-t",
                                           help="PRM P(good) below which a step is an error (repeat; 0.5)."),
    split: str = typer.Option("test", help="processbench split, or `all` (an outside file has no splits)."),
    rerank: bool = typer.Option(True, "--rerank/--no-rerank", help="Best-of-N over the problems' rollouts."),
    plot: Path = typer.Option(None, "--plot", help="Write a PNG of the results here."),
    run_id: str = typer.Option(None, "--run-id", help="Run id of the eval_results rows (default: new)."),
    config: Path = typer.Option(None, "--config", help="Run config YAML whose labeler settings, completer "
                                "and judges label an outside set (default: built-in defaults)."),
) -> None:
    """Score a PRM and/or labelers on an export's ProcessBench-style set, or on an outside one.

    Examples: prm-data eval -d exports/v1 -c checkpoints/prm -s labeler:mc_value -s judge:judge --plot eval.png;
    prm-data eval -d processbench_gsm8k.jsonl -s labeler:tool_verify -s labeler:judge_vote --config configs/sim.yaml
    """
    from prm_data.eval_outside import OutsideSetError, is_outside_set
    from prm_data.evaluate import run_eval

    if checkpoint is None and not sources:
        fail("nothing to evaluate: give --checkpoint and/or --source", EXIT_USAGE)
    bad = [s for s in sources or () if s.partition(":")[0] not in ("labeler", "judge") or not s.partition(":")[2]]
    if bad:
        fail(f"unknown source {', '.join(map(repr, bad))}: use labeler:NAME[@VERSION] or judge:NAME", EXIT_USAGE)
    if checkpoint is not None and not (Path(checkpoint) / "config.json").is_file():
        fail(f"no PRM checkpoint at {checkpoint}: give a folder written by `prm-data train --output-dir`")
    outside = is_outside_set(dataset)
    run_config = _run_config(config) if outside else None
    warehouse = open_warehouse(ctx) if outside else open_existing_warehouse(ctx)
    run_id = run_id or f"eval-{uuid.uuid4().hex[:12]}"
    try:
        rows = run_eval(warehouse, dataset, run_id, checkpoint=checkpoint, sources=sources or (),
                        thresholds=thresholds or (0.5,), split=split, rerank=rerank,
                        plot_path=str(plot) if plot else None, run_config=run_config)
    except (OutsideSetError, ValueError, FileNotFoundError) as exc:
        fail(str(exc), EXIT_ERROR)
    for r in rows:
        value = "n/a" if r["value"] is None else f"{r['value']:.4f}"
        at = "" if r["threshold"] is None else f" @ {r['threshold']:g}"
        console.print(f"{r['benchmark']:<12} {r['evaluated']}{at}: {r['metric']} = {value} (n={r['n']})",
                      markup=False, highlight=False)
    console.print(f"eval_results run {run_id}" + (f"; plot {plot}" if plot else ""))


def _run_config(path: Path | None):
    """The run config whose backends label an outside set (built-in defaults without --config)."""
    import yaml
    from pydantic import ValidationError

    from prm_data.config import RunConfig

    if path is None:
        return RunConfig()
    try:
        return RunConfig.from_yaml(path)
    except (ValidationError, ValueError, OSError, yaml.YAMLError) as exc:
        fail(f"bad run config {config_error(path, exc)}", EXIT_USAGE)
