"""The flows: generate_rollouts, expand_trees, label_steps, aggregate_and_filter, store,
export_dataset, train_prm, and the parent `nightly` that orders them.

Flows only order tasks; each task wraps one stage of prm_data.pipeline.
"""

from __future__ import annotations

import time
from datetime import datetime

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows import tasks
from flows.runners import night_cluster, night_usage, task_runner_for
from prm_data.config import RunConfig
from prm_data.pipeline.context import usage_totals
from prm_data.pipeline.close import close_run, open_run
from prm_data.pipeline.runs import write_run
from prm_data.pipeline.summary import summary_markdown


def _results(futures) -> list:
    return [f.result() for f in futures]


@flow(name="generate_rollouts")
def generate_rollouts(config: RunConfig, run_id: str, shards: list[str]) -> list[str | None]:
    return _results([tasks.generate_shard.submit(config, run_id, s) for s in shards])


@flow(name="expand_trees")
def expand_trees(config: RunConfig, run_id: str, shards: list[str]) -> list[list[str]]:
    return _results([tasks.expand_trees_shard.submit(config, run_id, s) for s in shards])


@flow(name="label_steps")
def label_steps(config: RunConfig, run_id: str, shards: list[str]) -> list[str | None]:
    labelers = config.labeling.shard_labelers()
    if {"judge_vote", "rubric"} & set(labelers):
        tasks.check_judges(config, run_id)  # a refused judge fails the flow before any judging
    return _results([tasks.label_shard.submit(config, run_id, s, n) for s in shards for n in labelers])


@flow(name="aggregate_and_filter")
def aggregate_and_filter(config: RunConfig, run_id: str, shards: list[str]) -> list[str | None]:
    return _results([tasks.aggregate_shard.submit(config, run_id, s) for s in shards])


@flow(name="store")
def store(config: RunConfig, run_id: str, started_at: datetime, timings: dict, usage: dict | None = None) -> dict:
    """Close the run: summary, report plots, the `runs` row, views for the duckdb CLI, the artifact."""
    return close_run(config, run_id, started_at, timings, usage_totals() if usage is None else usage)


@flow(name="export_dataset")
def export_dataset(config: RunConfig) -> dict:
    return tasks.export_dataset(config)


@flow(name="train_prm")
def train_prm(config: RunConfig, export_dir: str | None = None) -> dict:
    return tasks.train_prm(config, export_dir or config.export.out_dir)


@flow(name="nightly")  # no log_prints: dill (datasets hashing) captures dis.dis via print
def nightly(config: RunConfig = RunConfig(), run_id: str | None = None, new_run: bool = False) -> dict:
    """One labeling night: the problems not yet labeled under this config, end to end.

    Resumes the latest unfinished run of the same labeling version unless
    `new_run`; finished shards are skipped, model answers come from the cache.
    """
    run_id, started = open_run(config, run_id, new_run)
    timings: dict[str, float] = {}

    def stage(name, sub, *args):
        t = time.perf_counter()
        try:
            return sub.with_options(task_runner=runner)(config, *args) if hasattr(sub, "with_options") else sub(*args)
        finally:
            timings[name] = time.perf_counter() - t

    try:
        with night_cluster(config) as dask_address:
            runner = task_runner_for(config, dask_address)
            shards = tasks.select_problems(config, run_id)
            stage("generate_rollouts", generate_rollouts, run_id, shards)
            stage("expand_trees", expand_trees, run_id, shards)
            stage("label_steps", label_steps, run_id, shards)
            stage("aggregate_and_filter", aggregate_and_filter, run_id, shards)
            export = stage("export_dataset", export_dataset)
            train = stage("train_prm", train_prm, export.get("path")) if config.train.enabled else {
                "skipped": "training disabled"}
            usage = night_usage(dask_address)
    except BaseException:
        write_run(config, run_id, "failed", started, timings, usage_totals())
        raise
    summary = store(config, run_id, started, timings, usage)
    summary["export"], summary["train"] = export, train
    create_markdown_artifact(key="prm-data-run-summary", markdown=summary_markdown(summary, export),
                             description=f"prm-data run {run_id}")
    return summary
