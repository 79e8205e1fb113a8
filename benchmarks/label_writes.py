"""Step labels through the label stage's own write, from each labeler output type: the write-path figure.

Same labels, same process: `StepLabels` (the columns labelers fill now,
prm_data/records.py) beside one `StepLabel` object per step (their output
before), each written as the label stage writes it (`labels_table` then
`Warehouse.write_shard`, one shard per labeler), then the `StepLabels` path
again with two worker processes writing shards at once (two label tasks on
two cores, as the Dask and Ray executors run them). Run by
benchmarks/warehouse_scale.py (its `label_writes` result, `--label-writes N`
alone); `python benchmarks/label_writes.py [N]` runs it and writes
benchmarks/results/label_writes.json. Goal (issue 15): >= 1M rows/s on 2 cores.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from prm_data.warehouse import Warehouse

RESULTS = Path(__file__).resolve().parent / "results"
LABELERS = ("mc_value", "tool_verify", "judge_vote")
GOAL_ROWS_PER_S = 1_000_000  # issue 15: through the label stage's own write, on 2 cores


def bench_labels(n: int, seed: int = 0) -> dict[str, list[tuple]]:
    """`n` step labels of three labelers (a third each), as (base fields, evidence) tuples, evidence shaped
    as each labeler's own in a `configs/sim.yaml` run: Monte Carlo estimates with the outcome verifier's tag
    (mc_value); arithmetic checks, one in 30 labels also an ungrounded-number check with `ok` null
    (tool_verify); a single judge's votes, whose Fleiss' kappas are null (judge_vote: a null in every label,
    the slowest case of the NaN check). Values, confidences and costs as each labeler sets them (a k = 8
    estimate's fraction and Wilson confidence; 1/0 for a check; the vote share and margin), verdicts and
    successes drawn at random."""
    from prm_data.records import wilson_confidence

    rng = np.random.default_rng(seed)
    verdicts, successes = rng.random(n) < 0.7, rng.integers(0, 9, n)
    out: dict[str, list[tuple]] = {name: [] for name in LABELERS}
    for i in range(n):
        kind, good = LABELERS[i % 3], bool(verdicts[i])
        ids = (f"p-{i // 80:08d}", f"r-{i // 5:010d}", i % 5)
        if kind == "mc_value":
            s = int(successes[i])
            base = (*ids, s / 8, s > 0, wilson_confidence(s, 8), 1200, 240, 8)
            evidence = {"node_id": f"n-{i:012d}", "mc_successes": s, "mc_samples": 8, "new_samples": 8,
                        "reused_samples": 0, "early_stopped": False, "samples_saved": 0,
                        "est_completion_tokens_saved": 0, "soft_estimate": s / 8, "hard_estimate": s > 0, "k": 8,
                        "shared_estimate": False, "completer_model": "sim-policy", "terminal": False,
                        "mc_score": float(s), "outcome": "hard", "verifier": "math@1"}
        elif kind == "tool_verify":
            base = (*ids, 1.0 if good else 0.0, good, 0.9 if good else 0.95, 0, 0, 0)
            checks = [{"check": "arithmetic", "claim": "3 + 4 = 7", "computed": "7", "claimed": "7" if good else "8",
                       "ok": good}]
            if i % 30 == 1:
                checks.insert(0, {"check": "ungrounded_number", "claim": "3 + 4 = 7", "used": "4", "ok": None})
            evidence = {"verdict": "verified" if good else "contradicted", "checks": checks}
        else:
            votes = 4.0 if good else 1.0
            base = (*ids, votes / 5, good, abs(2 * votes - 5) / 5, 400, 30, 1)
            evidence = {"mode": "per_step", "prompt_version": "judge_step.v1", "votes_correct": votes,
                        "votes_incorrect": 5.0 - votes, "margin": abs(2 * votes - 5) / 5,
                        "judges": {"judge": {"correct": int(votes), "incorrect": int(5 - votes)}},
                        "abstentions": {}, "fleiss_kappa_rollout": None, "fleiss_kappa_batch": None}
        out[kind].append((base, evidence))
    return out


def pipeline_label_writes(n: int = 100_000, repeats: int = 3, seed: int = 0, workers: int = 2) -> dict:
    """Step labels through the label stage's own write, from each labeler output type, same labels.

    Input: `bench_labels(n)`, one shard per labeler as the stage writes them
    (`pipeline/label.py:_write_output`: `labels_table(output.labels)` then
    `write_shard`, fsync and rename included). `step objects`: the labels as
    one `StepLabel` per step, the labelers' output before `StepLabels`
    (columns gathered per attribute, evidence JSON-encoded per label);
    `columns`: a `StepLabels` per labeler, the labelers' output now (counts in
    typed buffers, the evidence dicts encoded by one orjson call per shard,
    prm_data/evidence_json.py). The write is timed from the filled output to
    the renamed shard, in wall and CPU seconds of this process; filling the
    output (per step, inside the labeler's loop) is timed apart: building the
    `StepLabel`s vs `StepLabels.add`. Medians of `repeats`, the two paths
    interleaved; the columns path also split into its parts (base columns,
    evidence JSON, write_shard; and the evidence again with a null in every
    label, the slowest case of the NaN check). `parallel`: the columns path
    with `workers` forked processes writing at once, each its own `n /
    workers` labels of the three labelers in three shards (wall seconds from
    the moment all have filled their labels to the last rename; CPU seconds
    summed over the workers). `threads`: the same with `workers` threads of
    this process (two label tasks on the default thread task runner: orjson
    and the Python parts hold the GIL, Parquet and Arrow's kernels let it go;
    CPU seconds of the process).
    """
    from prm_data.records import StepLabel

    raw = bench_labels(n, seed)

    def objects() -> dict[str, list[StepLabel]]:
        return {name: [StepLabel(b[0], b[1], b[2], name, "1", b[3], b[4], b[5], b[6], b[7], b[8], ev)
                       for b, ev in rows] for name, rows in raw.items()}

    def columns() -> dict:
        return fill_columns(raw)

    def timed(fn, cpu: list | None = None) -> tuple[float, object]:
        gc.collect()  # what the step before left to collect is not charged to this one (timeit: no collector)
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        if cpu is not None:
            cpu.append(time.process_time() - c)  # CPU seconds of the whole process (all threads)
        return time.perf_counter() - t, result

    folder = Path(tempfile.mkdtemp(prefix="prm-label-writes-"))
    fill: dict[str, list[float]] = {"step objects": [], "columns": []}
    fill_cpu: dict[str, list[float]] = {"step objects": [], "columns": []}
    write: dict[str, list[float]] = {"step objects": [], "columns": []}
    write_cpu: dict[str, list[float]] = {"step objects": [], "columns": []}
    parts: dict[str, dict[str, list[float]]] = {name: {p: [] for p in _PARTS} for name in raw}
    parallel: dict[str, list[float]] = {"wall": [], "cpu": []}
    threads: dict[str, list[float]] = {"wall": [], "cpu": []}
    load = [os.getloadavg()[0]]
    try:
        wh = Warehouse(folder)
        for rep in range(repeats):
            for path, build in (("step objects", objects), ("columns", columns)):
                output = None  # the other path's labels are not kept alive for the collector to walk
                seconds, output = timed(build, fill_cpu[path])
                fill[path].append(seconds)
                write[path].append(timed(lambda: write_shards(wh, output, path.replace(" ", "_")), write_cpu[path])[0])
            for name, labels in output.items():  # the columns path, part by part, in CPU seconds
                for part, fn in _column_parts(wh, labels).items():
                    timed(fn, parts[name][part])
            wall, cpu = _parallel_writes(wh, n, seed, workers)
            parallel["wall"].append(wall)
            parallel["cpu"].append(cpu)
            output = None
            wall, cpu = _threaded_writes(wh, n, seed, workers)
            threads["wall"].append(wall)
            threads["cpu"].append(cpu)
        load.append(os.getloadavg()[0])
        same = all(_same_stored_labels(wh, f"step_objects-{name}", f"columns-{name}") for name in raw)
        evidence_bytes = {name: pc.mean(pc.binary_length(labels.table("run").column("evidence"))).as_py()
                          for name, labels in fill_columns(raw).items()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    med = {k: {path: statistics.median(v) for path, v in d.items()}
           for k, d in (("fill", fill), ("fill_cpu", fill_cpu), ("write", write), ("write_cpu", write_cpu))}
    part_cpu_s = {name: {p: statistics.median(v) for p, v in d.items()} for name, d in parts.items()}
    paths = {path: {"write_median_s": med["write"][path], "write_rows_per_s": n / med["write"][path],
                    "write_cpu_median_s": med["write_cpu"][path], "write_rows_per_cpu_s": n / med["write_cpu"][path],
                    "fill_median_s": med["fill"][path], "fill_rows_per_s": n / med["fill"][path],
                    "fill_cpu_median_s": med["fill_cpu"][path], "fill_rows_per_cpu_s": n / med["fill_cpu"][path],
                    "fill_and_write_rows_per_cpu_s": n / (med["fill_cpu"][path] + med["write_cpu"][path]),
                    "fill_and_write_rows_per_s": n / (med["fill"][path] + med["write"][path])} for path in fill}
    wall, cpu = statistics.median(parallel["wall"]), statistics.median(parallel["cpu"])
    t_wall, t_cpu = statistics.median(threads["wall"]), statistics.median(threads["cpu"])
    return {"labels": n, "repeats": repeats, "labelers": list(raw), "load_average_1m": load, "paths": paths,
            "columns_parts_cpu_s": part_cpu_s, "evidence_bytes_per_label": evidence_bytes, "same_rows": bool(same),
            "parallel": {"workers": workers, "shards": workers * len(raw), "write_median_s": wall,
                         "write_rows_per_s": n / wall, "write_cpu_median_s": cpu, "write_rows_per_cpu_s": n / cpu},
            "threads": {"workers": workers, "shards": workers * len(raw), "write_median_s": t_wall,
                        "write_rows_per_s": n / t_wall, "write_cpu_median_s": t_cpu,
                        "write_rows_per_cpu_s": n / t_cpu},
            "write_speedup": med["write"]["step objects"] / med["write"]["columns"],
            "write_cpu_speedup": med["write_cpu"]["step objects"] / med["write_cpu"]["columns"],
            "fill_speedup": med["fill"]["step objects"] / med["fill"]["columns"]}


_PARTS = ("base columns", "evidence JSON", "write_shard", "evidence JSON, a null in every label")


def _column_parts(wh: Warehouse, labels) -> dict:
    """The steps of `labels_table(StepLabels)` + `write_shard`, one callable each (timed apart)."""
    from prm_data.evidence_json import encode_evidence
    from prm_data.schema import schema_for

    table = labels.table("run")
    types, with_nulls = labels.evidence_types, _null_in_every_label(labels)
    base = [f for f in schema_for("step_labels") if f.name != "evidence"]
    return {"base columns": lambda: [labels.column(f, "run") for f in base],
            "evidence JSON": lambda: encode_evidence(labels._evidence, types),
            "write_shard": lambda: wh.write_shard("step_labels", table, "run", "parts"),
            "evidence JSON, a null in every label": lambda: encode_evidence(with_nulls, types)}


def _null_in_every_label(labels) -> list[dict]:
    """Each label's evidence with a null where a float could be, so every label is looked at for a NaN: its
    first floating-point field null, or (none declared) a null first in its first "json" field's list."""
    import pyarrow as pa

    types = labels.evidence_types
    floats = [name for name, kind in types.items() if isinstance(kind, pa.DataType) and pa.types.is_floating(kind)]
    if floats:
        return [{**e, floats[0]: None} for e in labels._evidence]
    field = next(name for name, kind in types.items() if not isinstance(kind, pa.DataType))
    return [{**e, field: [None, *e.get(field, [])]} for e in labels._evidence]


def _declared() -> dict:
    from prm_data.labelers import judge_vote, mc_value, tool_verify

    return {"mc_value": mc_value.EVIDENCE, "tool_verify": tool_verify.EVIDENCE, "judge_vote": judge_vote.EVIDENCE}


def fill_columns(raw: dict[str, list[tuple]]) -> dict:
    """A `StepLabels` per labeler filled as a labeler fills it (`add` per step)."""
    from prm_data.records import StepLabels

    declared, out = _declared(), {}
    for name, rows in raw.items():
        labels = out[name] = StepLabels(name, "1", declared[name])
        add = labels.add
        for b, ev in rows:
            add(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], ev)
    return out


def write_shards(wh: Warehouse, output: dict, prefix: str) -> None:
    """Each labeler's labels as the label stage writes them (`labels_table`, then `write_shard`)."""
    from prm_data.records import labels_table

    for name, labels in output.items():
        wh.write_shard("step_labels", labels_table(labels, "run"), "run", f"{prefix}-{name}")


def _write_worker(n: int, seed: int, piece: int, pieces: int, root: str, start, results) -> None:
    """One worker process: writes a few labels first (a worker's first task pays its imports and Arrow's first
    calls once), fills its `n / pieces` labels of every labeler, waits for the others, writes its shards."""
    wh = Warehouse(root)
    write_shards(wh, fill_columns(bench_labels(300, seed + 100 + piece)), f"warm-up-{piece}")
    shards = fill_columns(bench_labels(n // pieces, seed + 1 + piece))  # its own labels, shaped as the others
    gc.collect()  # as `timed` does before each measured step
    start.wait()
    began, cpu = time.perf_counter(), time.process_time()
    write_shards(wh, shards, f"parallel-{piece}")
    results.put((began, time.perf_counter(), time.process_time() - cpu))


def _parallel_writes(wh: Warehouse, n: int, seed: int, workers: int) -> tuple[float, float]:
    """(wall, summed CPU) seconds for `workers` processes to write their shards at once through the stage's write.

    The workers are spawned, not forked, as Dask's and Ray's worker processes are (a forked child pays a
    copy of every page of this process it touches), and warmed up by one small write each; each fills its
    own labels first (as a label task does in its worker); the clock starts when all are filled (the
    perf_counter clock is the machine's, not the process's).
    """
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(workers), context.Queue()
    procs = [context.Process(target=_write_worker, args=(n, seed, i, workers, str(wh.root), start, results))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    times = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise RuntimeError(f"a write worker exited with {proc.exitcode}")
    return max(t[1] for t in times) - min(t[0] for t in times), sum(t[2] for t in times)


def _threaded_writes(wh: Warehouse, n: int, seed: int, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds for `workers` threads of this process to write their own labels' shards at once."""
    import threading

    shards = [fill_columns(bench_labels(n // workers, seed + 1 + i)) for i in range(workers)]
    start = threading.Barrier(workers + 1)
    gc.collect()

    def write(piece: int) -> None:
        start.wait()
        write_shards(wh, shards[piece], f"threads-{piece}")

    pool = [threading.Thread(target=write, args=(i,)) for i in range(workers)]
    for thread in pool:
        thread.start()
    began, cpu = time.perf_counter(), time.process_time()
    start.wait()
    for thread in pool:
        thread.join()
    return time.perf_counter() - began, time.process_time() - cpu


def _same_stored_labels(wh: Warehouse, a: str, b: str) -> bool:
    """Both shards hold the same rows, the evidence equal as parsed JSON written back with sorted keys."""
    read = "SELECT * FROM read_parquet(?) ORDER BY rollout_id, step_index"
    rows = [wh.query(read, [str(wh.shard_path("step_labels", "run", s))]).to_pylist() for s in (a, b)]
    canon = [[{**r, "evidence": json.dumps(json.loads(r["evidence"]), sort_keys=True)} for r in rs] for rs in rows]
    return len(rows[0]) > 0 and canon[0] == canon[1]


def label_writes_table(r: dict) -> str:
    lines = [f"{r['labels']:,} step labels of {', '.join(r['labelers'])}, one shard per labeler, medians of "
             f"{r['repeats']} (load average {r['load_average_1m'][0]:.1f} -> {r['load_average_1m'][1]:.1f}, "
             f"{os.cpu_count()} CPUs)", "",
             f"{'output type':<20}{'write rows/s':>14}{'per CPU s':>12}{'fill per CPU s':>16}"
             f"{'fill+write per CPU s':>22}"]
    for path, p in r["paths"].items():
        lines.append(f"{path:<20}{p['write_rows_per_s']:>14,.0f}{p['write_rows_per_cpu_s']:>12,.0f}"
                     f"{p['fill_rows_per_cpu_s']:>16,.0f}{p['fill_and_write_rows_per_cpu_s']:>22,.0f}")
    par = r["parallel"]
    lines += [f"{'columns, ' + str(par['workers']) + ' workers':<20}{par['write_rows_per_s']:>14,.0f}"
              f"{par['write_rows_per_cpu_s']:>12,.0f}   ({par['shards']} shards written by {par['workers']} "
              "processes at once; CPU summed over them)",
              f"{'columns, ' + str(r['threads']['workers']) + ' threads':<20}{r['threads']['write_rows_per_s']:>14,.0f}"
              f"{r['threads']['write_rows_per_cpu_s']:>12,.0f}   (the same by {r['threads']['workers']} threads of "
              "one process, as on the default thread task runner)",
              f"goal >= {GOAL_ROWS_PER_S:,} rows/s on 2 cores ({par['workers']} label tasks at once, per wall "
              f"second): {'met' if par['write_rows_per_s'] >= GOAL_ROWS_PER_S else 'NOT met'}",
              f"columns / objects: write {r['write_speedup']:.2f}x wall, {r['write_cpu_speedup']:.2f}x CPU; "
              f"fill {r['fill_speedup']:.2f}x; same rows: {r['same_rows']}", "",
              "columns path, CPU us per label: " + ", ".join(_PARTS)]
    for name, parts in r["columns_parts_cpu_s"].items():
        labels = r["labels"] / len(r["labelers"])
        lines.append(f"  {name:<12}" + "".join(f"{v / labels * 1e6:>10.2f}" for v in parts.values())
                     + f"   ({r['evidence_bytes_per_label'][name]:.0f} bytes of evidence JSON per label)")
    return "\n".join(lines)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    results = pipeline_label_writes(n)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "label_writes.json").write_text(json.dumps(results, indent=2) + "\n")
    print(label_writes_table(results))


if __name__ == "__main__":
    main()
