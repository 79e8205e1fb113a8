"""Reading a shard's inputs back from the warehouse (stages pass ids, not data)."""

from __future__ import annotations

from datetime import datetime, timezone

from prm_data.rollouts import RolloutSteps, rollouts_from_rows
from prm_data.warehouse import Warehouse

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# The readers below touch only the files of their run (and, for problems, the problems
# table), never a view over every run's shards, so their cost does not grow with unrelated
# runs (issue 21).
def _selected_ids(wh: Warehouse, run_id: str, shard: str) -> list[str]:
    chosen = wh.read_files("run_problems", wh.run_files("run_problems", run_id), "run_id = ? AND shard = ?",
                           [run_id, shard])
    return sorted(set(chosen.column("problem_id").to_pylist()))


def shard_problems(wh: Warehouse, run_id: str, shard: str) -> list[dict]:
    """The shard's problem rows, by id; a problem stored more than once: its earliest row."""
    ids = _selected_ids(wh, run_id, shard)
    if not ids:
        return []
    # problems are shared by every run: only the problems shards that hold these ids are read
    rows = wh.read_keyed("problems", None, "problem_id", ids).to_pylist()
    rows.sort(key=lambda r: (r["problem_id"], r["created_at"] is None, r["created_at"] or _EPOCH))
    first = {}
    for r in rows:
        first.setdefault(r["problem_id"], r)
    return [first[pid] for pid in sorted(first)]


def shard_rollouts(wh: Warehouse, run_id: str, shard: str, skip_uniform: bool = False) -> list[dict]:
    ids = _selected_ids(wh, run_id, shard)
    if not ids:
        return []
    # The generate stage writes a shard's rollouts to the rollouts shard of the same name; read
    # only that one when it is there, else every shard of the run (same rows, found slower).
    named = wh.existing_shard("rollouts", run_id, shard)
    files = [named] if named else wh.run_files("rollouts", run_id)
    where = "run_id = ? AND list_contains(?::VARCHAR[], problem_id)"
    if skip_uniform:
        where += " AND coalesce(problem_outcome, 'mixed') = 'mixed'"
    rows = wh.read_files("rollouts", files, where, [run_id, ids])
    return rows.sort_by([("problem_id", "ascending"), ("sample_index", "ascending"),
                         ("rollout_id", "ascending")]).to_pylist()


def shard_steps(wh: Warehouse, run_id: str, rollout_ids: list[str]) -> list[dict]:
    if not rollout_ids:
        return []
    rows = wh.read_keyed("steps", run_id, "rollout_id", rollout_ids)
    return rows.sort_by([("rollout_id", "ascending"), ("step_index", "ascending")]).to_pylist()


def rollout_steps(wh: Warehouse, run_id: str, shard: str, skip_uniform: bool,
                  problems: list[dict] | None = None) -> list[RolloutSteps]:
    """The shard's rollouts as labeler input (`problems`: the shard's problem rows, when already read)."""
    rollouts = shard_rollouts(wh, run_id, shard, skip_uniform)
    steps = shard_steps(wh, run_id, [r["rollout_id"] for r in rollouts])
    return rollouts_from_rows(shard_problems(wh, run_id, shard) if problems is None else problems, rollouts, steps)
