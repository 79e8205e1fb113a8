"""The pipeline's stages as plain functions (no Prefect): flows/ only orders them.

Every stage takes the run config and a run id (plus a shard name where the
work is sharded), reads its inputs from the warehouse, writes its outputs as
deterministically named shards and returns their paths. A stage whose output
shard already exists returns at once, so a rerun of a crashed run does only
the unfinished work; together with the request cache, nothing is paid twice.

    select_problems -> generate_shard -> expand_trees_shard -> label_shard
                    -> aggregate_shard -> export_stage -> train_stage -> finish_run

`prm_data.pipeline.serial.run_serial(config)` runs them all in one process.
"""
