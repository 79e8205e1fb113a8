"""Stages: fuse and filter labels per shard, export the training set, train the PRM."""

from __future__ import annotations

from prm_data.aggregate import AggregateConfig, aggregate
from prm_data.export import EmptyExport
from prm_data.export_run import run_export
from prm_data.filters import (balance_classes, drop_by_length, drop_duplicate_rollouts, drop_judge_injection,
                              drop_unparseable, mark_dropped, steps_by_rollout)
from prm_data.pipeline.context import StageScope
from prm_data.pipeline.inputs import shard_rollouts, shard_steps
from prm_data.run_warehouse import for_run
from prm_data.stepwise_rows import write_final_labels


def aggregate_shard(scope: StageScope, shard: str, policy: AggregateConfig, f, labelers: tuple[str, ...],
                    skip_uniform: bool) -> str | None:
    """`final_labels` (and their `stepwise_rows`) of a shard under the policy, fusing the labels of
    `labelers` (the run's), with the filters' (`f`, a FiltersConfig) decisions as kept/drop_reason."""
    wh, run_id = scope.warehouse, scope.run_id
    marker = f"{policy.policy}-{shard}"
    if done := wh.existing_shard("final_labels", run_id, marker):
        return done
    rollouts = shard_rollouts(wh, run_id, shard, skip_uniform)
    if not rollouts:
        return None
    ids = [r["rollout_id"] for r in rollouts]
    steps = steps_by_rollout(shard_steps(wh, run_id, ids))
    wanted = set(labelers)
    labels = [row for row in wh.read_keyed("step_labels", run_id, "rollout_id", ids).to_pylist()
              if row["labeler"] in wanted]  # only the run's shards that hold the shard's rollouts
    final = aggregate(labels, policy, run_id, {r["rollout_id"]: r["num_steps"] for r in rollouts}, labelers)
    dropped: list[dict] = []
    kept = rollouts
    if f.drop_unparseable:
        res = drop_unparseable(kept)
        kept, dropped = res.kept, dropped + res.dropped
    if f.drop_injection:
        res = drop_judge_injection(kept, steps=steps)
        kept, dropped = res.kept, dropped + res.dropped
    if f.dedup_rollouts:
        res = drop_duplicate_rollouts(kept, normalized=True, steps=steps)
        kept, dropped = res.kept, dropped + res.dropped
    res = drop_by_length(kept, f.length, steps=steps)
    dropped += res.dropped
    final = mark_dropped(final, dropped, override=True)  # a rollout's own defect names why it is out
    if f.balance is not None:
        res = balance_classes(final, f.balance)
        final = res.kept + res.dropped
    if not final:
        return None
    return str(write_final_labels(wh, final, run_id, marker))


def export_stage(scope: StageScope, export) -> dict:
    """Export the kept final labels of this run, or of every run (`export`: an ExportStageConfig, its
    `scope`); push when configured. This run's are read from its own shards only (`for_run`, prm_data/run_warehouse.py)."""
    if not export.enabled:
        return {"skipped": "export disabled"}
    wh, options = scope.warehouse, export.options
    if export.scope == "run":
        wh, options = for_run(wh, scope.run_id), options.model_copy(update={"run_id": scope.run_id})
    try:
        result = run_export(wh, export.out_dir, options, push_to_hub=export.push_to_hub, private=export.private)
    except EmptyExport as exc:
        return {"skipped": str(exc)}
    return {"path": str(result.path), "counts": result.counts, "pushed_to": result.repo_id}


def train_stage(scope: StageScope, export: dict, train) -> dict:
    """Fine-tune the PRM on the export (`train`: a TrainStageConfig; a GPU work pool in production)."""
    if not train.enabled:
        return {"skipped": "training disabled"}
    if not export.get("path"):
        return {"skipped": "no export to train on"}
    from prm_data.train.loop import train_prm

    result = train_prm(train.options.model_copy(update={"dataset": export["path"]}))
    return {"output_dir": result.output_dir, "steps": result.steps,
            "first_loss": result.losses[0] if result.losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            "tokens_per_second": result.tokens_per_second}
