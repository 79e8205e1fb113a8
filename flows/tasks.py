"""Prefect tasks: one per pipeline stage, each owning its retry policy.

Task results are persisted under PREFECT_HOME/results and cached on the
task's inputs (run config, run id, shard) plus the warehouse's instance id,
so a rerun skips finished shards; clients and connections are never inputs
(stages build them per process). The stage functions also skip outputs that
already exist, and the request cache serves every model answer already paid
for, so a crashed run resumes where it stopped.
"""

from __future__ import annotations

import hashlib

from prefect import task
from prefect.context import TaskRunContext

from flows.prefect_env import results_dir
from prm_data.config import RunConfig
from prm_data.pipeline import finalize, generate, label, select
from prm_data.warehouse import Warehouse


def stage_cache_key(context: TaskRunContext, parameters: dict) -> str:
    """Hash of the task, its inputs and the warehouse instance they refer to."""
    config: RunConfig = parameters["config"]
    parts = [context.task.name, Warehouse(config.warehouse).instance_id, config.model_dump_json()]
    parts += [f"{k}={v}" for k, v in sorted(parameters.items()) if k != "config"]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


CACHED = dict(cache_key_fn=stage_cache_key, persist_result=True, result_storage=results_dir())


def retry_if_transient(task, task_run, state) -> bool:
    """Retry a failed task unless its error is permanent (missing package or file, bad config, refused key)."""
    from prm_data.preflight import permanent_reason

    return permanent_reason(state.data) is None if isinstance(state.data, BaseException) else True


MODEL_RETRIES = dict(retries=2, retry_delay_seconds=[5, 30], retry_jitter_factor=0.5,
                     retry_condition_fn=retry_if_transient)


@task(name="select-problems", retries=1, retry_delay_seconds=5, **CACHED)
def select_problems(config: RunConfig, run_id: str) -> list[str]:
    return select.select_problems(config, run_id)


@task(name="generate-shard", task_run_name="generate-{shard}", **MODEL_RETRIES, **CACHED)
def generate_shard(config: RunConfig, run_id: str, shard: str) -> str | None:
    return generate.generate_shard(config, run_id, shard)


@task(name="check-judges", retries=1, retry_delay_seconds=10, **CACHED)
def check_judges(config: RunConfig, run_id: str) -> dict:
    return label.check_judges_stage(config, run_id)


@task(name="expand-trees-shard", task_run_name="expand-trees-{shard}", **MODEL_RETRIES, **CACHED)
def expand_trees_shard(config: RunConfig, run_id: str, shard: str) -> list[str]:
    return label.expand_trees_shard(config, run_id, shard)


@task(name="label-shard", task_run_name="{labeler}-{shard}", **MODEL_RETRIES, **CACHED)
def label_shard(config: RunConfig, run_id: str, shard: str, labeler: str) -> str | None:
    return label.label_shard(config, run_id, shard, labeler)


@task(name="aggregate-shard", task_run_name="aggregate-{shard}", retries=1, **CACHED)
def aggregate_shard(config: RunConfig, run_id: str, shard: str) -> str | None:
    return finalize.aggregate_shard(config, run_id, shard)


# Export and training are not cached: they read every run's labels, which change between runs.
@task(name="export-dataset", retries=2, retry_delay_seconds=[10, 60])
def export_dataset(config: RunConfig) -> dict:
    return finalize.export_stage(config)


@task(name="train-prm", retries=0)
def train_prm(config: RunConfig, export_dir: str | None) -> dict:
    return finalize.train_stage(config, export_dir)
