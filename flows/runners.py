"""The task-runner switch: threads by default, Dask or Ray by config."""

from collections.abc import Iterator
from contextlib import contextmanager

from prm_data.config import RunConfig


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
    return RayTaskRunner(init_kwargs={"num_cpus": config.max_workers, "include_dashboard": False})  # unless started


@contextmanager
def night_cluster(config: RunConfig) -> Iterator[str | None]:
    """One local cluster for all the stages of a night: a Dask cluster (yields its address) or a Ray
    instance (yields None; every RayTaskRunner of the night then uses it); nothing for threads.

    A Dask or Ray task runner on its own starts a new cluster for every flow run it
    serves (on 2 cores, a Ray start takes 40-60 s); sharing one keeps the workers warm
    between stages: imports done once, and run contexts (a local model loaded once
    per worker) reused by every stage.
    """
    if config.task_runner == "ray":
        import ray

        if ray.is_initialized():  # someone else's instance: theirs to shut down
            yield None
            return
        ray.init(num_cpus=config.max_workers, include_dashboard=False)
        try:
            yield None
        finally:
            ray.shutdown()
        return
    if config.task_runner != "dask":
        yield None
        return
    from distributed import LocalCluster

    with LocalCluster(n_workers=config.max_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address
