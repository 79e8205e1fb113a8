"""The `nightly` flow: the plan (prm_data/pipeline/plan.py) run under Prefect.

Each stage becomes a subflow named after it, whose task runner (threads,
Dask, Ray) comes from the config; its invocations are tasks with the stage's
retry and cache policy (flows/tasks.py). The flow only orders them.

No `from __future__ import annotations` here: Prefect builds the flow's
parameter model from these annotations, and a served deployment resolves
them outside this module (string annotations there fail with
"NightlyModel is not fully defined").
"""

import time
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run as current_flow_run
from prefect.settings import temporary_settings

from flows.runners import night_cluster, task_runner_for
from flows.tasks import STAGE_TASKS, process_context
from prm_data.config import RunConfig
from prm_data.pipeline.close import close_run, open_run
from prm_data.pipeline.context import latest_usage, merge_usage
from prm_data.pipeline.plan import STAGES, Stage, call, stages_for
from prm_data.pipeline.runs import write_run
from prm_data.pipeline.summary import summary_markdown


@flow(name="stage")
def run_stage(stage: str, config: RunConfig, run_id: str, items: list, given=None) -> list:
    """Submit every invocation of one stage; (state name, output) of each, in item order (a failure raises)."""
    futures = [STAGE_TASKS[stage].submit(stage, config, run_id, list(args), given) for args in items]
    for future in futures:  # each future keeps its final state: `state` then asks the API nothing, and is final
        future.wait()
    return [(f.state.name, f.result()) for f in futures]


def _run(stage: Stage, runner, config: RunConfig, run_id: str, shards: list[str], given, usage: dict) -> list:
    # no heartbeat thread of its own: the nightly flow's, in this same process, already says the run is alive,
    # and Prefect joins a flow run's heartbeat thread on exit, up to a second of each stage spent waiting
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        done = run_stage.with_options(name=stage.name, flow_run_name=f"{stage.name}-{run_id}", task_runner=runner)(
            stage.name, config, run_id, stage.items(config, shards), given)
    outputs = []
    for state_name, out in done:
        if state_name != "Cached":  # a cached result's usage was spent by an earlier process
            latest_usage(usage, out["process"], out["usage"])
        outputs.append(out["result"])
    return outputs


@flow(name="nightly")  # no log_prints: dill (datasets hashing) captures print
def nightly(config: RunConfig = RunConfig(), run_id: str | None = None, new_run: bool = False) -> dict:
    """One labeling night: the problems not yet labeled under this config, end to end.

    Resumes the latest unfinished run of the same labeling version unless
    `new_run`; finished shards are skipped, model answers come from the cache.
    """
    run_id, started = open_run(config, run_id, new_run)
    _name_flow_run(f"prm-data-{run_id}")
    timings: dict[str, float] = {}
    results: dict[str, object] = {}
    snapshots: dict[str, dict] = {}  # worker process -> its latest cumulative usage
    usage = lambda: merge_usage(*snapshots.values())  # noqa: E731
    try:
        with night_cluster(config) as dask_address:
            runner = task_runner_for(config, dask_address)
            for stage in stages_for(config):
                t = time.perf_counter()
                try:
                    outputs = _run(stage, runner, config, run_id, results.get("select", []),
                                   results.get(stage.input), snapshots)
                finally:
                    timings[stage.name] = time.perf_counter() - t
                results[stage.name] = outputs[0] if stage.fan_out == "once" else outputs
    except BaseException:
        write_run(config, run_id, "failed", started, timings, usage())
        raise
    summary = close_run(config, run_id, started, timings, usage())
    export = summary["export"] = results.get("export", {"skipped": "export disabled"})
    summary["train"] = results.get("train", {"skipped": "training disabled"})
    create_markdown_artifact(key="prm-data-run-summary", markdown=summary_markdown(summary, export),
                             description=f"prm-data run {run_id}")
    create_table_artifact(key="prm-data-label-balance", table=label_balance_rows(summary),
                          description=f"Step labels per labeler and final labels of run {run_id}")
    if export.get("path"):
        create_link_artifact(key="prm-data-export", link=Path(export["path"]).resolve().as_uri(),
                             link_text=str(export["path"]), description=f"The export after run {run_id}")
    return summary


def _name_flow_run(name: str) -> None:
    """Name this flow run after the prm-data run it works on (the id is known only once the run is opened)."""
    with get_client(sync_client=True) as client:
        client.update_flow_run(current_flow_run.get_id(), name=name)


def label_balance_rows(summary: dict) -> list[dict]:
    """The label-balance table of a run: per labeler its steps and good share, then the kept final labels."""
    rows = [{"labels": l["labeler"], "steps": int(l["steps"]),
             "good_share": None if l["good_share"] is None else round(float(l["good_share"]), 4),
             "abstained": int(l["abstained"] or 0)} for l in summary["labelers"]]
    final = summary["final"]
    rows.append({"labels": "final (kept)", "steps": int(final.get("kept_steps") or 0),
                 "good_share": None if final.get("good_share") is None else round(float(final["good_share"]), 4),
                 "abstained": 0})
    return rows


@flow(name="train_prm")
def train_prm(config: RunConfig, export_dir: str | None = None) -> dict:
    """The plan's train stage alone, on `export_dir` (default export.out_dir): the GPU deployment's flow."""
    stage = STAGES["train"]
    ctx = process_context(config, "train-prm")
    return call(stage, ctx.scope(stage.name), (), config, {"path": export_dir or config.export.out_dir})
