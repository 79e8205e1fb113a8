"""Stages: fuse and filter labels per shard, export the training set, train the PRM."""

from __future__ import annotations

from prm_data.aggregate import aggregate
from prm_data.config import RunConfig
from prm_data.export import EmptyExport, run_export
from prm_data.filters import (balance_classes, drop_by_length, drop_duplicate_rollouts, drop_judge_injection,
                              drop_unparseable, mark_dropped, steps_by_rollout)
from prm_data.pipeline.inputs import shard_rollouts, shard_steps
from prm_data.stepwise_rows import write_final_labels
from prm_data.warehouse import Warehouse


def aggregate_shard(config: RunConfig, run_id: str, shard: str) -> str | None:
    """`final_labels` (and their `stepwise_rows`) of a shard under the configured policy, with filter
    decisions as kept/drop_reason."""
    wh = Warehouse(config.warehouse)
    policy = config.aggregate.policy
    marker = f"{policy}-{shard}"
    if done := wh.existing_shard("final_labels", run_id, marker):
        return done
    rollouts = shard_rollouts(wh, run_id, shard, config.rollouts.skip_uniform)
    if not rollouts:
        return None
    ids = [r["rollout_id"] for r in rollouts]
    steps = steps_by_rollout(shard_steps(wh, run_id, ids))
    labels = wh.read_keyed("step_labels", run_id, "rollout_id", ids).to_pylist()  # only the shards holding them
    final = aggregate(labels, config.aggregate, run_id, {r["rollout_id"]: r["num_steps"] for r in rollouts})
    f = config.filters
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


def export_stage(config: RunConfig) -> dict:
    """Export every run's kept final labels under the configured policy; push when configured."""
    if not config.export.enabled:
        return {"skipped": "export disabled"}
    wh = Warehouse(config.warehouse)
    options = config.export.options.model_copy(update={"policy": config.aggregate.policy})
    try:
        result = run_export(wh, config.export.out_dir, options, push_to_hub=config.export.push_to_hub,
                            private=config.export.private)
    except EmptyExport as exc:
        return {"skipped": str(exc)}
    return {"path": str(result.path), "counts": result.counts,
            "pushed_to": result.repo_id}


def train_stage(config: RunConfig, export_dir: str | None) -> dict:
    """Fine-tune the PRM on the export (run on a GPU work pool in production)."""
    if not config.train.enabled:
        return {"skipped": "training disabled"}
    if not export_dir:
        return {"skipped": "no export to train on"}
    from prm_data.train.config import TrainConfig
    from prm_data.train.loop import train_prm

    t = config.train
    result = train_prm(TrainConfig(dataset=export_dir, model=t.model, output_dir=t.output_dir,
                                   label_mode=t.label_mode, max_steps=t.max_steps, lora=t.lora))
    return {"output_dir": result.output_dir, "steps": result.steps,
            "first_loss": result.losses[0] if result.losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            "tokens_per_second": result.tokens_per_second}
