"""The warehouse at scale: write throughput, size on disk and query latency at 10M step labels.

Synthetic rows in the real schema (prm_data/schema.py), shaped like a big labeling
campaign: problems with 16 rollouts each, 3 to 7 steps per rollout (5 on average),
three labelers per step (`mc_value`, `tool_verify`, `judge_vote`) and one final
label per step. `--rows N` is the number of `step_labels` rows; the other tables
follow (N/3 steps and final labels, N/15 rollouts, N/240 problems).

Measured:
- write throughput: rows per second through `Warehouse.write_shard` (pyarrow cast,
  Parquet with zstd, fsync, atomic rename), shards of `--shard-rows` rows written
  by `--writers` threads, as parallel stage tasks would; every table but `final_labels`;
- final labels through `write_final_labels` (prm_data/stepwise_rows.py), as the
  aggregate stage writes them: each shard (whole problems, about `--shard-rows`
  rows) also builds its `stepwise_rows` from the run's steps, so the export query
  is a scan; rows per second and the seconds spent;
- size on disk of the Parquet shards, and bytes per step label;
- latency of the standard queries through `Warehouse.connect()` (the views every
  tool uses), each result fetched whole as Arrow, median of `--repeats` runs:
  the `first_error` view (first error per rollout and labeler), the
  `problem_stats` view (per-problem pass rate and cost), the `label_agreement`
  view (pairwise labeler agreement), the stepwise export query
  (warehouse/queries/export_stepwise.sql), and a drill-down (one problem's first errors);
- the stepwise export end to end (`run_export`: query, split, datasets, Parquet and
  save_to_disk copies, card), once;
- step labels through the label stage's own write (`pipeline_label_writes`, in
  benchmarks/label_writes.py), from each labeler output type on the same labels:
  `StepLabels` (columns the labelers fill, counts in typed buffers, evidence
  encoded by one orjson call per shard) beside one `StepLabel` object per step
  (the output before it), on up to 100k labels of three labelers, medians of 3,
  wall and CPU seconds, and the `StepLabels` path again with two worker
  processes writing at once; `--label-writes N` runs only this and writes
  benchmarks/results/label_writes.json. Unlike the writes above (prebuilt Arrow
  tables with two short evidence strings), this is the path labels take in a
  run: from what a labeler fills to the renamed shard (issue 15's figure).

Goals (issue 8): every standard query under 1 s on 2 cores, writes at >= 1M rows/s.

Run: `python benchmarks/warehouse_scale.py [--rows 10000000] [--quick]`; prints a
table and writes benchmarks/results/warehouse_scale.json. `run(quick=True)` uses
300k rows (the test suite uses fewer, with `rows=`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prm_data.export import ExportConfig
from prm_data.export_run import run_export
from prm_data.schema import schema_for
from prm_data.stepwise_rows import write_final_labels
from prm_data.warehouse import Warehouse, load_query

sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_writes import label_writes_table, pipeline_label_writes  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LABELERS = ("mc_value", "tool_verify", "judge_vote")
ROLLOUTS_PER_PROBLEM = 16
RUN_ID = "bench"
GOALS = {"query_s": 1.0, "write_rows_per_s": 1_000_000}
QUERIES = {
    "first_error": "SELECT * FROM first_error",
    "problem_stats": "SELECT * FROM problem_stats",
    "label_agreement": "SELECT * FROM label_agreement",
    "export_stepwise": None,  # warehouse/queries/export_stepwise.sql, with its parameters
    "one_problem_first_errors": "SELECT * FROM first_error WHERE rollout_id IN "
                                "(SELECT rollout_id FROM rollouts WHERE problem_id = ?)",
}


# ---------------------------------------------------------------- synthetic rows
def _ids(prefix: str, n: int, offset: int = 0) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(np.arange(offset, offset + n)), pa.string()), "")


def _s(values) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def campaign(step_labels: int, seed: int = 0) -> dict[str, pa.Table]:
    """Every table of a synthetic campaign with about `step_labels` step_labels rows."""
    rng = np.random.default_rng(seed)
    rollouts = max(ROLLOUTS_PER_PROBLEM, step_labels // (len(LABELERS) * 5))
    problems = max(1, rollouts // ROLLOUTS_PER_PROBLEM)
    rollouts = problems * ROLLOUTS_PER_PROBLEM
    r_idx = np.arange(rollouts)
    r_problem = r_idx // ROLLOUTS_PER_PROBLEM
    n_steps = 3 + (r_idx * 7 + r_problem) % 5  # 3..7 steps
    first_error = np.where(rng.random(rollouts) < 0.5, -1, (rng.random(rollouts) * n_steps).astype(np.int64))
    steps = int(n_steps.sum())
    s_rollout = np.repeat(r_idx, n_steps)
    s_index = np.arange(steps) - np.repeat(np.cumsum(n_steps) - n_steps, n_steps)
    s_fe = first_error[s_rollout]
    s_good = (s_fe == -1) | (s_index < s_fe)
    problem_ids = _ids("p-", problems)
    rollout_ids = _ids("r-", rollouts)
    s_problem_ids = problem_ids.take(pa.array(r_problem[s_rollout]))
    s_rollout_ids = rollout_ids.take(pa.array(s_rollout))
    a = rng.integers(2, 99, steps)
    b = rng.integers(2, 99, steps)
    step_text = pc.binary_join_element_wise(
        "Step ", _s(s_index + 1), ": she adds the ", _s(b), " new items to the ", _s(a),
        " she had, so ", _s(a), " + ", _s(b), " = ", _s(a + b), ".", "")
    correct = first_error == -1
    answers = _s(rng.integers(1, 500, rollouts))

    tables = {
        "problems": {
            "problem_id": problem_ids, "run_id": [RUN_ID] * problems, "source": ["bank"] * problems,
            "question": pc.binary_join_element_wise(
                "Lena has ", _s(np.arange(problems) % 90 + 10), " books. Then she buys ",
                _s(np.arange(problems) % 37 + 2), " more books and gives away a third of them. "
                "How many books does Lena have now? (problem ", _s(np.arange(problems)), ")", ""),
            "answer": _s(np.arange(problems) % 500), "difficulty": pa.array(np.full(problems, 3), pa.int32()),
        },
        "rollouts": {
            "rollout_id": rollout_ids, "run_id": [RUN_ID] * rollouts, "problem_id": problem_ids.take(pa.array(r_problem)),
            "policy_model": ["sim-policy"] * rollouts, "sample_index": r_idx % ROLLOUTS_PER_PROBLEM,
            "text": pc.binary_join_element_wise("Step 1: ... (", _s(n_steps), " steps) The answer is \\boxed{",
                                                answers, "}.", ""),
            "final_answer": answers, "answer_status": np.where(correct, "correct", "incorrect"),
            "is_correct": correct, "num_steps": n_steps.astype(np.int32), "finish_reason": ["stop"] * rollouts,
            "prompt_tokens": np.full(rollouts, 180), "completion_tokens": n_steps * 24,
            "request_key": _ids("k-", rollouts), "true_first_error": first_error.astype(np.int32),
            "problem_outcome": ["mixed"] * rollouts,
        },
        "steps": {
            "rollout_id": s_rollout_ids, "run_id": [RUN_ID] * steps, "problem_id": s_problem_ids,
            "step_index": s_index.astype(np.int32), "text": step_text,
        },
        "final_labels": {
            "run_id": [RUN_ID] * steps, "problem_id": s_problem_ids, "rollout_id": s_rollout_ids,
            "step_index": s_index.astype(np.int32), "policy": ["consensus"] * steps, "label": s_good,
            "value": np.where(s_good, 0.9, 0.1), "kept": np.ones(steps, bool),
            "sources": pa.array([["mc_value", "judge_vote"]] * 2).take(pa.array(np.zeros(steps, np.int64))),
        },
    }
    label_parts = []
    for i, name in enumerate(LABELERS):
        flip = rng.random(steps) < (0.05, 0.1, 0.2)[i]
        hard = np.where(flip, ~s_good, s_good)
        label_parts.append({
            "run_id": [RUN_ID] * steps, "problem_id": s_problem_ids, "rollout_id": s_rollout_ids,
            "step_index": s_index.astype(np.int32), "labeler": [name] * steps, "labeler_version": ["1"] * steps,
            "value": np.where(hard, 0.875, 0.125), "hard_label": hard, "confidence": np.full(steps, 0.8),
            "prompt_tokens": np.full(steps, 0 if name == "tool_verify" else 400),
            "completion_tokens": np.full(steps, 0 if name == "tool_verify" else 30),
            "calls": np.full(steps, 0 if name == "tool_verify" else 1),
            "evidence": pa.array(['{"verdict": "verified"}', '{"verdict": "contradicted"}']).take(
                pa.array((~hard).astype(np.int64))),
        })
    out = {name: _table(name, cols) for name, cols in tables.items()}
    out["step_labels"] = pa.concat_tables([_table("step_labels", p) for p in label_parts])
    return out


def _table(name: str, columns: dict) -> pa.Table:
    schema = schema_for(name)
    n = len(next(iter(columns.values())))
    arrays = [pa.array(columns[f.name], f.type) if f.name in columns and not isinstance(columns[f.name], pa.Array)
              else (columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type)) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


# ---------------------------------------------------------------- measurements
def write_all(wh: Warehouse, tables: dict[str, pa.Table], shard_rows: int, writers: int) -> dict:
    jobs = [(name, t.slice(start, shard_rows), f"{name}-{start // shard_rows:05d}")
            for name, t in tables.items() for start in range(0, t.num_rows, shard_rows)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(lambda job: wh.write_shard(job[0], job[1], run_id=RUN_ID, shard=job[2]), jobs))
    seconds = time.perf_counter() - t0
    rows = sum(t.num_rows for t in tables.values())
    return {"rows": rows, "shards": len(jobs), "seconds": seconds, "rows_per_s": rows / seconds,
            "rows_by_table": {k: t.num_rows for k, t in tables.items()}}


def problem_slices(final_labels: pa.Table, shard_rows: int) -> list[tuple[int, int]]:
    """(offset, length) slices of about `shard_rows` rows that never split a problem (rows are by problem)."""
    problem = final_labels.column("problem_id").to_numpy(zero_copy_only=False)
    cuts = [0]
    for start in np.flatnonzero(np.r_[True, problem[1:] != problem[:-1]]):  # each problem's first row
        if start - cuts[-1] >= shard_rows:
            cuts.append(int(start))
    cuts.append(len(problem))
    return [(a, b - a) for a, b in zip(cuts, cuts[1:]) if b > a]


def write_final(wh: Warehouse, final_labels: pa.Table, shard_rows: int, writers: int) -> dict:
    slices = problem_slices(final_labels, shard_rows)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(lambda i: write_final_labels(wh, final_labels.slice(*slices[i]), RUN_ID, f"final-{i:05d}"),
                      range(len(slices))))
    seconds = time.perf_counter() - t0
    return {"rows": final_labels.num_rows, "shards": len(slices), "seconds": seconds,
            "rows_per_s": final_labels.num_rows / seconds}


def disk_bytes(wh: Warehouse) -> dict[str, int]:
    out = {}
    for d in sorted(wh.tables_dir.iterdir()):
        out[d.name] = sum(p.stat().st_size for p in d.rglob("*.parquet"))
    return out


def time_queries(wh: Warehouse, repeats: int) -> dict:
    problem = wh.rows("SELECT problem_id FROM problems ORDER BY problem_id LIMIT 1")[0]["problem_id"]
    out = {}
    for name, sql in QUERIES.items():
        params: list | dict | None = None
        if sql is None:
            sql, params = load_query("export_stepwise"), {"policy": "consensus", "run_id": None}
        elif "?" in sql:
            params = [problem]
        times, rows = [], 0
        for _ in range(repeats):
            con = wh.connect()
            t0 = time.perf_counter()
            result = con.sql(sql, params=params).to_arrow_table()
            times.append(time.perf_counter() - t0)
            con.close()
            rows = result.num_rows
        out[name] = {"median_s": statistics.median(times), "first_s": times[0], "rows": rows}
    return out


def time_export(wh: Warehouse, out: Path) -> dict:
    """The stepwise training set end to end: query, split, datasets, Parquet + save_to_disk, card."""
    t0 = time.perf_counter()
    result = run_export(wh, out, ExportConfig(policy="consensus", formats=("stepwise",)))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": sum(result.counts["stepwise"].values()),
            "mb": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6}


def run(quick: bool = False, rows: int | None = None, shard_rows: int = 1_000_000, writers: int = 2,
        repeats: int = 3, root: str | None = None, out_dir: Path | None = RESULTS) -> dict:
    """Build, write and query a synthetic campaign; returns (and writes, unless out_dir is None) the results."""
    rows = rows or (300_000 if quick else 10_000_000)
    t0 = time.perf_counter()
    tables = campaign(rows)
    generated_s = time.perf_counter() - t0
    folder = Path(root) if root else Path(tempfile.mkdtemp(prefix="prm-warehouse-scale-"))
    try:
        wh = Warehouse(folder)
        final_labels = tables.pop("final_labels")
        write = write_all(wh, tables, shard_rows, writers)
        final = write_final(wh, final_labels, shard_rows, writers)
        del tables, final_labels
        sizes = disk_bytes(wh)
        queries = time_queries(wh, repeats)
        export = time_export(wh, folder / "export")
        label_writes = pipeline_label_writes(min(rows, 100_000), repeats)
    finally:
        if not root:
            shutil.rmtree(folder, ignore_errors=True)
    labels = write["rows_by_table"]["step_labels"]
    results = {
        "step_labels": labels, "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0], "shard_rows": shard_rows, "writers": writers,
        "generate_s": generated_s, "write": write, "final_labels_write": final, "export": export, "label_writes": label_writes, "disk_bytes": sizes, "disk_mb_total": sum(sizes.values()) / 1e6,
        "bytes_per_step_label": sum(sizes.values()) / labels, "queries": queries, "goals": GOALS,
        "goals_met": {"write": write["rows_per_s"] >= GOALS["write_rows_per_s"],
                      "label_stage_write_2_cores":
                          label_writes["parallel"]["write_rows_per_s"] >= GOALS["write_rows_per_s"],
                      **{q: v["median_s"] < GOALS["query_s"] for q, v in queries.items()}},
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "warehouse_scale.json").write_text(json.dumps(results, indent=2) + "\n")
        plot(results, out_dir / "warehouse_scale.png")
    return results


def plot(results: dict, path: Path) -> None:
    """Median latency of each standard query against the 1 s goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["queries"])
    values = [results["queries"][n]["median_s"] for n in names]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(names, values, color=["#2a9d8f" if v < GOALS["query_s"] else "#e76f51" for v in values])
    ax.axvline(GOALS["query_s"], color="grey", ls="--", lw=1, label=f"goal {GOALS['query_s']} s")
    ax.set_xlabel("median latency (s)")
    ax.set_title(f"{results['step_labels']:,} step labels: writes {results['write']['rows_per_s'] / 1e6:.1f}M rows/s, "
                 f"{results['disk_mb_total']:.0f} MB on disk")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: dict) -> str:
    w = results["write"]
    lines = [f"warehouse at {results['step_labels']:,} step labels ({w['rows']:,} rows in {w['shards']} shards, "
             f"{results['cpus']} CPUs, load average {results['load_average_1m']:.1f})", "",
             f"{'measure':<28}{'value':>16}{'goal':>14}  met",
             f"{'write rows/s':<28}{w['rows_per_s']:>16,.0f}{GOALS['write_rows_per_s']:>14,}  "
             f"{'yes' if results['goals_met']['write'] else 'NO'}",
             f"{'final labels rows/s':<28}{results['final_labels_write']['rows_per_s']:>16,.0f}{'':>14}  "
             f"(with their stepwise_rows, {results['final_labels_write']['shards']} shards in "
             f"{results['final_labels_write']['seconds']:.1f} s)",
             f"{'size on disk (MB)':<28}{results['disk_mb_total']:>16,.1f}{'':>14}",
             f"{'bytes per step label':<28}{results['bytes_per_step_label']:>16,.1f}{'':>14}"]
    lw = results["label_writes"]
    cols, par = lw["paths"]["columns"], lw["parallel"]
    lines.append(f"{'label stage write rows/s':<28}{par['write_rows_per_s']:>16,.0f}{GOALS['write_rows_per_s']:>14,}  "
                 f"{'yes' if results['goals_met']['label_stage_write_2_cores'] else 'NO'}   ({par['workers']} label "
                 f"tasks at once, per wall s; one process: {cols['write_rows_per_s']:,.0f} per wall s, "
                 f"{cols['write_rows_per_cpu_s']:,.0f} per CPU s; {lw['labels']:,} labels, benchmarks/label_writes.py)")
    e = results["export"]
    lines.append(f"{'stepwise export, whole (s)':<28}{e['seconds']:>16.1f}{'':>14}  "
                 f"({e['rows']:,} rows, {e['mb']:.0f} MB: Parquet, save_to_disk, card)")
    for name, q in results["queries"].items():
        lines.append(f"{name + ' (s)':<28}{q['median_s']:>16.3f}{GOALS['query_s']:>14}  "
                     f"{'yes' if results['goals_met'][name] else 'NO'}   ({q['rows']:,} rows)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="step_labels rows (default 10M; 300k with --quick)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--shard-rows", type=int, default=1_000_000)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", default=None, help="keep the warehouse here instead of a deleted temp folder")
    parser.add_argument("--label-writes", type=int, default=None, metavar="N",
                        help="only time N step labels through the label stage's write (both output types)")
    args = parser.parse_args()
    if args.label_writes:
        results = pipeline_label_writes(args.label_writes, args.repeats)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "label_writes.json").write_text(json.dumps(results, indent=2) + "\n")
        print(label_writes_table(results))
        return
    results = run(args.quick, args.rows, args.shard_rows, args.writers, args.repeats, args.root)
    print(table(results))


if __name__ == "__main__":
    main()
