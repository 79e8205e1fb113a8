"""All stages in one process, in order, without Prefect (debugging, tests, benchmarks).

The Prefect `nightly` flow (flows/nightly.py) runs the same stage functions
with retries, caching, concurrency and artifacts on top.
"""

from __future__ import annotations

import time

from prm_data.config import RunConfig
from prm_data.pipeline.close import close_run, open_run
from prm_data.pipeline.context import usage_totals
from prm_data.pipeline.finalize import aggregate_shard, export_stage, train_stage
from prm_data.pipeline.generate import generate_shard
from prm_data.pipeline.label import check_judges_stage, expand_trees_shard, label_shard
from prm_data.pipeline.runs import write_run
from prm_data.pipeline.select import select_problems


def run_serial(config: RunConfig, run_id: str | None = None, new_run: bool = False) -> dict:
    run_id, started = open_run(config, run_id, new_run)
    timings: dict[str, float] = {}

    def timed(name, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t

    try:
        shards = timed("select", select_problems, config, run_id)
        for shard in shards:
            timed("generate", generate_shard, config, run_id, shard)
        timed("check_judges", check_judges_stage, config, run_id)
        for shard in shards:
            timed("expand_trees", expand_trees_shard, config, run_id, shard)
            for labeler in config.labeling.shard_labelers():
                timed(f"label:{labeler}", label_shard, config, run_id, shard, labeler)
            timed("aggregate", aggregate_shard, config, run_id, shard)
        export = timed("export", export_stage, config)
        train = timed("train", train_stage, config, export.get("path"))
    except BaseException:
        write_run(config, run_id, "failed", started, timings, usage_totals())
        raise
    summary = close_run(config, run_id, started, timings, usage_totals())
    summary["export"], summary["train"] = export, train
    return summary
