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
    # Only the `run_problems` and `runs` shards are read (one or two small files per run), never the
    # views over every table, whose first use reads every shard's footer (issue 21).
    chosen = wh.read_files("run_problems", wh.run_files("run_problems", run_id), "run_id = ?", [run_id])
    if chosen.num_rows:
        return sorted(set(chosen.column("shard").to_pylist()))
    rows = load_problems(problems.source, problems.mapping, run_id=run_id, failures=scope.failures)
    ingest_problems(wh, rows, run_id)
    scope.failures.flush(wh, "source")
    version = scope.ctx.labeling_version
    completed = sorted(set(wh.read_files("runs", wh.run_files("runs", None), "status = 'completed'")
                           .column("run_id").to_pylist()))
    done = set(wh.read_files("run_problems", wh.run_files("run_problems", None),
                             "labeling_version = ? AND list_contains(?::VARCHAR[], run_id)", [version, completed])
               .column("problem_id").to_pylist())
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
