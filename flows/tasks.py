"""Prefect tasks made from the plan: one task per stage, with the stage's declared policy.

`STAGE_TASKS[name]` wraps `run_item`, which runs one invocation of the stage in
this process's run context (built once per process and run, the first time a
task of that run lands here: a Dask or Ray worker keeps its clients, and a
local model stays loaded, across every shard it works on). It returns the
stage's result and this context's cumulative usage, so the flow accounts for
the model calls of every worker process without reaching into them.

Cached stages key on the task, the warehouse instance, the labeling version,
the run id and the fan-out arguments: what determines the result. Changing
workers, paths of reports or export options never invalidates a finished
shard. The stage functions also skip outputs that already exist, and the
request cache serves every answer already paid for, so a crashed run resumes
where it stopped.
"""

from __future__ import annotations

import hashlib
import threading

from prefect import task
from prefect.context import TaskRunContext

from flows.prefect_env import results_dir
from prm_data.pipeline.context import RunContext
from prm_data.pipeline.plan import PLAN, STAGES, Stage, call

_CONTEXTS: dict[tuple[str, str, str], RunContext] = {}  # this process's run contexts
_LOCK = threading.Lock()


def process_context(config, run_id: str) -> RunContext:
    """This process's context of the run (made on first use)."""
    key = (config.warehouse, run_id, config.model_dump_json(include={"policy", "completer", "prover", "judges"}))
    with _LOCK:
        ctx = _CONTEXTS.get(key)
        if ctx is None:
            ctx = _CONTEXTS[key] = RunContext.for_run(config, run_id)
    return ctx


def forget_contexts() -> None:
    """Drop this process's run contexts (a test standing in for a fresh process)."""
    with _LOCK:
        _CONTEXTS.clear()


def stage_cache_key(context: TaskRunContext, parameters: dict) -> str:
    """Hash of the stage, the warehouse instance, the labeling version, the run and the item."""
    config = parameters["config"]
    ctx = process_context(config, parameters["run_id"])
    parts = [context.task.name, ctx.warehouse.instance_id, ctx.labeling_version, parameters["run_id"],
             repr(tuple(parameters.get("args") or ()))]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def run_item(stage: str, config, run_id: str, args: tuple = (), given=None) -> dict:
    """One invocation of `stage`: {"result", "process", "usage"} (usage: cumulative, of this process's context)."""
    ctx = process_context(config, run_id)
    spec = STAGES[stage]
    result = call(spec, ctx.scope(spec.item_name(tuple(args))), tuple(args), config, given)
    return {"result": result, "process": ctx.process, "usage": ctx.usage()}


def retry_if_transient(task, task_run, state) -> bool:
    """Retry a failed task unless its error is permanent (missing package or file, bad config, refused key)."""
    from prm_data.preflight import permanent_reason

    return permanent_reason(state.data) is None if isinstance(state.data, BaseException) else True


def _task_for(stage: Stage):
    name_of = {"once": stage.name, "per_shard": stage.name + "-{args[0]}",
               "per_shard_labeler": "{args[1]}-{args[0]}"}[stage.fan_out]
    options = dict(name=stage.name, task_run_name=name_of, retries=stage.retries,
                   retry_delay_seconds=list(stage.retry_delays_s) or 0)
    if stage.retries and stage.retry_delays_s:
        options["retry_jitter_factor"] = 0.5
    if stage.retries:
        options["retry_condition_fn"] = retry_if_transient  # a permanent error fails at once (issue 13)
    if stage.cached:
        options.update(cache_key_fn=stage_cache_key, persist_result=True, result_storage=results_dir())
    return task(run_item, **options)


STAGE_TASKS = {stage.name: _task_for(stage) for stage in PLAN}
