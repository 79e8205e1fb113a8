"""The serial executor: every stage of the plan in this process, in order, without Prefect.

Debugging, tests and benchmarks use it; the Prefect `nightly` flow
(flows/nightly.py) runs the same plan (prm_data/pipeline/plan.py) with retries,
caching, concurrency and artifacts on top, and writes the same rows.
"""

from __future__ import annotations

import time

from prm_data.pipeline.close import close_run, open_run
from prm_data.pipeline.context import RunContext
from prm_data.pipeline.plan import call, stages_for
from prm_data.pipeline.runs import write_run


def run_serial(config, run_id: str | None = None, new_run: bool = False) -> dict:
    """Run the plan for `config` (a RunConfig) once; returns the run's summary."""
    run_id, started = open_run(config, run_id, new_run)
    ctx = RunContext.for_run(config, run_id)
    timings: dict[str, float] = {}
    results: dict[str, object] = {}
    try:
        for stage in stages_for(config):
            t = time.perf_counter()
            try:
                shards = results.get("select", [])
                outputs = [call(stage, ctx.scope(stage.item_name(args)), args, config, results.get(stage.input))
                           for args in stage.items(config, shards)]
            finally:
                timings[stage.name] = time.perf_counter() - t
            results[stage.name] = outputs[0] if stage.fan_out == "once" else outputs
    except BaseException:
        write_run(config, run_id, "failed", started, timings, ctx.usage())
        raise
    summary = close_run(config, run_id, started, timings, ctx.usage())
    summary["export"] = results.get("export", {"skipped": "export disabled"})
    summary["train"] = results.get("train", {"skipped": "training disabled"})
    return summary
