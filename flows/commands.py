"""CLI verbs that run flows: `prm-data run` and `prm-data schedule`.

Prefect is imported inside the commands only, so other verbs stay fast and
the library stays usable without it.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import typer

from prm_data.commands import EXIT_ERROR, EXIT_USAGE, console, err_console, fail

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "local.yaml"


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("schedule")(schedule)


TASK_RUNNERS = ("thread", "dask", "ray")


def _load_config(ctx: typer.Context, config: Path | None, limit: int | None, task_runner: str | None):
    """The run config of the file (or the defaults) with the command line's overrides, validated as a whole."""
    import yaml
    from pydantic import ValidationError

    from prm_data.commands import config_error, validation_message
    from prm_data.config import RunConfig

    if task_runner is not None and task_runner not in TASK_RUNNERS:
        fail(f"--task-runner {task_runner!r}: choose one of {', '.join(TASK_RUNNERS)}", EXIT_USAGE)
    path = config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    try:
        cfg = RunConfig.from_yaml(path) if path else RunConfig()
    except (ValidationError, ValueError, OSError, yaml.YAMLError) as exc:
        fail(f"bad run config {config_error(path, exc)}", EXIT_USAGE)
    data = cfg.model_dump(mode="json")
    root_obj = ctx.find_root().obj or {}
    if root_obj.get("warehouse_explicit"):
        data["warehouse"] = str(root_obj["warehouse"])
    if limit is not None:
        data["problems"]["limit"] = limit
    if task_runner:
        data["task_runner"] = task_runner
    try:
        return RunConfig.model_validate(data), path
    except ValidationError as exc:
        fail(f"bad override of run config {path}: {validation_message(exc)}", EXIT_USAGE)


class _Bars:
    """Rich progress bars fed by prm_data.progress events."""

    def __init__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=err_console, transient=False)
        self.tasks: dict[str, int] = {}

    def __call__(self, name: str, n: int, total: int | None) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=0)
        tid = self.tasks[name]
        if total:
            task = next(t for t in self.progress.tasks if t.id == tid)
            self.progress.update(tid, total=(task.total or 0) + total)
        if n:
            self.progress.advance(tid, n)


def run(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", exists=True, dir_okay=False,
                                help="Run config YAML (default: configs/local.yaml, the embedded local model)."),
    limit: int = typer.Option(None, "--limit", min=1, help="At most this many not-yet-labeled problems."),
    new_run: bool = typer.Option(False, "--new-run", help="Start a new run instead of resuming an unfinished one."),
    run_id: str = typer.Option(None, "--run-id", help="Resume or create this run id."),
    serial: bool = typer.Option(False, "--serial", help="Run the stages in this process without Prefect."),
    task_runner: str = typer.Option(None, "--task-runner", help="thread | dask | ray (overrides the config)."),
) -> None:
    """Run the nightly flow once: problems -> rollouts -> labels -> warehouse -> export."""
    from rich.markdown import Markdown

    from prm_data import progress
    from prm_data.pipeline.summary import summary_markdown
    from prm_data.pipeline.runs import RunInProgress
    from prm_data.preflight import PermanentError, check_backends, check_source, check_warehouse, permanent_reason

    cfg, path = _load_config(ctx, config, limit, task_runner)
    try:
        check_source(cfg)  # a missing problem file or bad bank spec: one line now, before any run is opened
        check_warehouse(cfg)  # an object store that refuses our credentials: likewise
        check_backends(cfg)  # a missing package, file or refused key: one line now, not retries later
    except PermanentError as exc:
        fail(f"run not started: {exc}", EXIT_ERROR)
    err_console.print(f"[bold]prm-data run[/] config={path or 'built-in defaults'} policy={cfg.policy.kind}"
                      f" labelers={','.join(cfg.labeling.labelers)} warehouse={cfg.warehouse}")
    bars = _Bars()
    stop = progress.listen(bars)
    t0 = time.perf_counter()
    try:
        with bars.progress:
            if serial:
                from prm_data.pipeline.serial import run_serial

                summary = run_serial(cfg, run_id=run_id, new_run=new_run)
            else:
                import flows  # noqa: F401  (Prefect settings before prefect is imported)
                from flows.nightly import nightly

                summary = nightly(cfg, run_id=run_id, new_run=new_run)
    except RunInProgress as exc:  # another process works on this run: nothing was done here
        fail(f"run not started: {exc}", EXIT_ERROR)
    except Exception as exc:
        if (reason := permanent_reason(exc)) is not None:  # a rerun would fail the same way: say why, once
            fail(f"run failed: {reason}", EXIT_ERROR)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            fail(f"run failed: no space left on the disk of the warehouse ({cfg.warehouse}) or of a temporary "
                 "file: free some and rerun the same command to resume (no half-written shard was kept; "
                 "finished shards and model answers are)", EXIT_ERROR)
        fail(f"run failed: {type(exc).__name__}: {exc}\nRerun the same command to resume: finished shards "
             "are kept and model answers come from the cache.", EXIT_ERROR)
    finally:
        stop()
    console.print(Markdown(summary_markdown(summary, summary.get("export"))))
    console.print(f"Report plots: {', '.join(summary.get('report', []))}")
    console.print(f"Done in {time.perf_counter() - t0:.1f} s.")
    if summary["problems"] == 0 and not summary["failures_total"]:  # nothing left tonight: success for cron and CI
        console.print("nothing new to label: every selected problem is already labeled under this config")
    elif summary["rollouts"] == 0:
        raise typer.Exit(EXIT_ERROR)


def schedule(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", "-c", exists=True, dir_okay=False, help="Run config YAML."),
    cron: str = typer.Option("0 2 * * *", help="Cron schedule (UTC)."),
    name: str = typer.Option("nightly", help="Deployment name."),
) -> None:
    """Serve the nightly flow on a cron schedule from this machine (needs `prefect server start`)."""
    import flows  # noqa: F401
    from flows.nightly import nightly

    cfg, _ = _load_config(ctx, config, None, None)
    if not os.environ.get("PREFECT_API_URL"):
        err_console.print("[yellow]PREFECT_API_URL is not set: cron only fires under a real server. Start one with "
                          "`prefect server start` and `export PREFECT_API_URL=http://127.0.0.1:4200/api`.[/]")
    from prefect.schedules import Cron

    try:
        when = Cron(cron, timezone="UTC")
    except ValueError as exc:  # checked before anything is served
        fail(f"--cron {cron!r}: {exc} (five fields: minute hour day month weekday, e.g. '0 2 * * *')", EXIT_USAGE)
    nightly.serve(name=name, schedules=[when],
                  parameters={"config": cfg.model_dump(mode="json")})
