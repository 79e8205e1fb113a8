"""Reading a shard's inputs back from the warehouse (stages pass ids, not data)."""

from __future__ import annotations

from prm_data.rollouts import RolloutSteps, rollouts_from_rows
from prm_data.warehouse import Warehouse


def shard_problem_ids(wh: Warehouse, run_id: str, shard: str) -> list[str]:
    return [r["problem_id"] for r in wh.rows(
        "SELECT problem_id FROM run_problems WHERE run_id = ? AND shard = ? ORDER BY problem_id", [run_id, shard])]


def shard_problems(wh: Warehouse, run_id: str, shard: str) -> list[dict]:
    return wh.rows(
        "SELECT * FROM problems WHERE problem_id IN "
        "(SELECT problem_id FROM run_problems WHERE run_id = ? AND shard = ?) "
        "QUALIFY row_number() OVER (PARTITION BY problem_id ORDER BY created_at NULLS LAST) = 1 "
        "ORDER BY problem_id", [run_id, shard])


def shard_rollouts(wh: Warehouse, run_id: str, shard: str, skip_uniform: bool = False) -> list[dict]:
    sql = ("SELECT * FROM rollouts WHERE run_id = ? AND problem_id IN "
           "(SELECT problem_id FROM run_problems WHERE run_id = ? AND shard = ?)")
    if skip_uniform:
        sql += " AND coalesce(problem_outcome, 'mixed') = 'mixed'"
    return wh.rows(sql + " ORDER BY problem_id, sample_index, rollout_id", [run_id, run_id, shard])


def shard_steps(wh: Warehouse, run_id: str, rollout_ids: list[str]) -> list[dict]:
    if not rollout_ids:
        return []
    return wh.rows("SELECT * FROM steps WHERE run_id = ? AND list_contains(?::VARCHAR[], rollout_id) "
                   "ORDER BY rollout_id, step_index", [run_id, rollout_ids])


def rollout_steps(wh: Warehouse, run_id: str, shard: str, skip_uniform: bool,
                  problems: list[dict] | None = None) -> list[RolloutSteps]:
    """The shard's rollouts as labeler input (`problems`: the shard's problem rows, when already read)."""
    rollouts = shard_rollouts(wh, run_id, shard, skip_uniform)
    steps = shard_steps(wh, run_id, [r["rollout_id"] for r in rollouts])
    return rollouts_from_rows(shard_problems(wh, run_id, shard) if problems is None else problems, rollouts, steps)
