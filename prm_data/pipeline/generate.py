"""Stage: sample the policy's rollouts for one shard of problems."""

from __future__ import annotations

from prm_data.pipeline.context import StageScope
from prm_data.pipeline.inputs import shard_problems
from prm_data.rollouts import RolloutConfig, generate_rollouts


def generate_shard(scope: StageScope, shard: str, rollouts: RolloutConfig) -> str | None:
    """Write rollouts, steps and completions of a shard; returns the rollouts shard path.

    The rollouts shard is written last: it is the marker that the shard is done.
    A shard whose every request failed writes no marker, so a rerun retries it.
    """
    wh, run_id = scope.warehouse, scope.run_id
    if done := wh.existing_shard("rollouts", run_id, shard):
        return done
    problems = shard_problems(wh, run_id, shard)
    if not problems:
        return None
    batch = generate_rollouts(problems, scope.client("policy"), rollouts, run_id, scope.ctx.verifiers)
    for table in ("steps", "completions", "failures"):
        rows = getattr(batch, table)
        if rows:
            wh.write_shard(table, rows, run_id=run_id, shard=f"rollout-{shard}")
    scope.flush()
    if not batch.rollouts:
        return None
    return str(wh.write_shard("rollouts", batch.rollouts, run_id=run_id, shard=shard))
