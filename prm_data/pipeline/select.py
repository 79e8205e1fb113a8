"""Choose the problems of a run: incremental, so a nightly schedule grows the dataset.

A run takes the source's problems not yet labeled under the current labeling
version by a completed run, up to `problems.limit`, and splits them into
shards of `shard_size` (the unit of resumption). The choice is written once
to `run_problems`; a resumed run reads it back instead of choosing again.
"""

from __future__ import annotations

from prm_data.pipeline.context import StageScope
from prm_data.sources import ingest_problems, load_problems


def select_problems(scope: StageScope, problems, shard_size: int) -> list[str]:
    """The run's shard names (choosing and recording its problems on first call); `problems`: a ProblemsConfig."""
    wh, run_id = scope.warehouse, scope.run_id
    chosen = wh.rows("SELECT DISTINCT shard FROM run_problems WHERE run_id = ? ORDER BY shard", [run_id])
    if chosen:
        return [r["shard"] for r in chosen]
    rows = load_problems(problems.source, problems.mapping, run_id=run_id, failures=scope.failures)
    ingest_problems(wh, rows, run_id)
    scope.failures.flush(wh, "source")
    version = scope.ctx.labeling_version
    done = {r["problem_id"] for r in wh.rows(
        "SELECT DISTINCT rp.problem_id FROM run_problems rp JOIN runs r ON r.run_id = rp.run_id "
        "WHERE r.status = 'completed' AND rp.labeling_version = ?", [version])}
    todo, seen = [], set()
    for r in rows:
        pid = r["problem_id"]
        if pid not in done and pid not in seen:
            seen.add(pid)
            todo.append(pid)
    if problems.limit is not None:
        todo = todo[: problems.limit]
    size = shard_size
    selection = [{"run_id": run_id, "problem_id": pid, "shard": f"s{i // size:04d}", "labeling_version": version}
                 for i, pid in enumerate(todo)]
    if selection:
        wh.write_shard("run_problems", selection, run_id=run_id, shard="selection")
    return sorted({r["shard"] for r in selection})
