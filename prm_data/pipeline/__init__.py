"""The pipeline's stages as plain functions (no Prefect), and the plan that orders them.

`plan.PLAN` lists the stages with their fan-out, sub-configs, reads and writes,
retry and cache policy (see docs/architecture.md). Every stage takes a
`StageScope` of the run's `RunContext` (prm_data/pipeline/context.py), its
fan-out arguments (a shard, a labeler) and its own sub-configs, reads its
inputs from the warehouse, writes its outputs as deterministically named
shards and returns their paths. A stage whose output shard already exists
returns at once, so a rerun of a crashed run does only the unfinished work;
together with the request cache, nothing is paid twice.

    select -> generate -> check_judges -> expand_trees -> label -> aggregate -> export -> train

`serial.run_serial(config)` runs the plan in one process; flows/nightly.py
runs it under Prefect. `close.open_run`/`close.close_run` open and close the run.
"""
