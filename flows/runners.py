"""The task-runner switch: threads by default, Dask or Ray by config."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prm_data.config import RunConfig
from prm_data.pipeline.context import usage_totals


def task_runner_for(config: RunConfig, dask_address: str | None = None):
    """A task runner for the config: `thread` (default), `dask` (local cluster or `dask_address`), `ray`."""
    if config.task_runner == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=config.max_workers)
    if config.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": config.max_workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    try:
        from prefect_ray import RayTaskRunner
    except ImportError as exc:
        raise RuntimeError("task_runner: ray needs `pip install prefect-ray` (see docs/scaling.md)") from exc
    return RayTaskRunner()


@contextmanager
def night_cluster(config: RunConfig) -> Iterator[str | None]:
    """One local Dask cluster for all the subflows of a night (its address), or None for other runners.

    A DaskTaskRunner without an address starts a new cluster for every flow run it
    serves; sharing one keeps the workers warm between stages: imports done once,
    and model clients (a local model loaded once per worker) reused by every stage.
    """
    if config.task_runner != "dask":
        yield None
        return
    from distributed import LocalCluster

    with LocalCluster(n_workers=config.max_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def merge_usage(*usages: dict[str, dict]) -> dict[str, dict]:
    """Sum per-purpose usage dicts (calls, tokens, cache hits and misses, failures)."""
    out: dict[str, dict] = {}
    for usage in usages:
        for purpose, counts in usage.items():
            acc = out.setdefault(purpose, {})
            for key, value in counts.items():
                acc[key] = acc.get(key, 0) + value
    return out


def night_usage(dask_address: str | None) -> dict[str, dict]:
    """The night's model usage: this process's clients, plus every Dask worker's (where the shards ran)."""
    local = usage_totals()
    if dask_address is None:
        return local
    from distributed import Client

    with Client(dask_address) as client:
        per_worker = client.run(usage_totals)
    return merge_usage(local, *per_worker.values())
