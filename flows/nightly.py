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

from prefect import flow
from prefect.artifacts import create_markdown_artifact

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
    return [(f.state.name, f.result()) for f in futures]


def _run(stage: Stage, runner, config: RunConfig, run_id: str, shards: list[str], given, usage: dict) -> list:
    done = run_stage.with_options(name=stage.name, flow_run_name=f"{stage.name}-{run_id}",
                                  task_runner=runner)(stage.name, config, run_id, stage.items(config, shards), given)
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
    return summary


@flow(name="train_prm")
def train_prm(config: RunConfig, export_dir: str | None = None) -> dict:
    """The plan's train stage alone, on `export_dir` (default export.out_dir): the GPU deployment's flow."""
    stage = STAGES["train"]
    ctx = process_context(config, "train-prm")
    return call(stage, ctx.scope(stage.name), (), config, {"path": export_dir or config.export.out_dir})
