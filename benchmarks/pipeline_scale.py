"""Cost of the whole pipeline as the work and the warehouse grow (issue 21).

The synthetic pipeline (`configs/sim.yaml`: sim policy and judge, labelers mc_value,
omega_prm, progress, tool_verify, judge_vote; only the bank size changed), run
serially (`run_serial`) in a fresh process per measurement:

- at each of `--sizes` problems on an empty warehouse;
- at `--history-size` problems on a warehouse already holding `--history` step
  labels from earlier runs.

The earlier runs are copies of one real run of this pipeline (every table's shards,
its request-cache answers included) under other run ids, with other problem ids,
request keys and labeling versions, so the new run selects and pays for all its
problems as it would on a fresh warehouse, while every view, glob and cache sees a
warehouse with as many shards, rows and stored answers as that history would leave.

- with `--cache-answers N 10N`: the request cache alone (prm_data/llm/cache.py)
  holding N and then 10N stored answers, opened in a fresh process: how long
  opening it takes, how much the process's RSS grows by opening it and by 2,000
  lookups (half stored, half not), and how long a lookup takes. The answers are
  written straight into the store (random keys, texts of 100-600 characters,
  like the sim's), not through a run, so 10M answers take minutes, not hours.

Printed per measurement: step labels, wall seconds and CPU seconds (user + sys of
the run's process) per step label, peak RSS, seconds per stage, and the peak RSS
while each stage ran (sampled every 50 ms; `close_run`: the summary, report plots
and runs row after the last stage). With
`--code main=DIR` (a checkout of another commit, e.g. a `git worktree` of main),
every measurement is made with that code too, in the same way; `--merge A.json B.json`
prints the results of separate invocations side by side. The machine these figures come from is shared: CPU
seconds per step label are the steadier figure; wall time follows the load.

Run: `python benchmarks/pipeline_scale.py [--sizes 240 1200 12000] [--history 1000000]
[--cache-answers 100000 1000000] [--code new=. --code main=/tmp/old-main]`; writes
benchmarks/results/pipeline_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
GOALS = {"1200_vs_240": 1.15, "12000_vs_240": 1.3, "history_vs_empty": 1.2, "peak_rss_mb_12000": 1024}

# Runs in the measured process: one serial run, then what it cost (JSON on the last line). A thread
# reads the RSS every 50 ms and keeps its peak per stage (and for closing the run), where the
# serial runner lets it see which stage runs.
CHILD = """
import json, resource, sys, threading, time
from prm_data.config import RunConfig
import prm_data.pipeline.serial as serial
from prm_data.warehouse import Warehouse
running, peaks = ["start"], {}
def sample():
    while True:
        with open("/proc/self/status") as fh:
            rss = next(int(l.split()[1]) / 1024 for l in fh if l.startswith("VmRSS"))
        peaks[running[0]] = max(peaks.get(running[0], 0), rss)
        time.sleep(0.05)
def tagged(name_of, function):
    def run(*args, **kwargs):
        before, running[0] = running[0], name_of(*args)
        try:
            return function(*args, **kwargs)
        finally:
            running[0] = before
    return run
if hasattr(serial, "call"):
    serial.call = tagged(lambda stage, *a: stage.name, serial.call)
if hasattr(serial, "close_run"):
    serial.close_run = tagged(lambda *a: "close_run", serial.close_run)
threading.Thread(target=sample, daemon=True).start()
config = RunConfig.from_yaml(sys.argv[1])
t0 = time.perf_counter()
summary = serial.run_serial(config)
wall = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_SELF)  # before the counting below, which is not the run's
run_id = summary.get("run_id") or Warehouse(config.warehouse).rows(
    "SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")[0]["run_id"]
try:  # the run's own views: the views over every run would cost seconds and memory on a large warehouse
    from prm_data.run_warehouse import for_run
    own = for_run(Warehouse(config.warehouse), run_id)
except ImportError:  # code from before for_run
    own = Warehouse(config.warehouse)
labels = own.scalar("SELECT count(*) FROM step_labels WHERE run_id = ?", [run_id])
print(json.dumps({"run_id": run_id, "step_labels": labels, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mb": usage.ru_maxrss / 1024, "stages_s": summary.get("timings") or {},
                  "stage_peak_rss_mb": {k: round(v) for k, v in peaks.items() if k != "start"}}))
"""


def write_config(folder: Path, problems: int, warehouse: Path, bank_seed: int = 0) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text())
    cfg["problems"]["source"] = f"bank:{problems}:3:{bank_seed}"
    cfg["warehouse"] = str(warehouse)
    cfg["export"]["out_dir"] = str(folder / "exports")
    path = folder / f"sim-{problems}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def measure(code: Path, config: Path, cwd: Path) -> dict:
    """One serial run with the prm_data of `code`, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    env.pop("PRM_DATA_WAREHOUSE", None)
    done = subprocess.run([sys.executable, "-c", CHILD, str(config)], cwd=cwd, env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"run with {code} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["ms_per_label"] = 1e3 * result["wall_s"] / result["step_labels"]
    result["cpu_ms_per_label"] = 1e3 * result["cpu_s"] / result["step_labels"]
    return result


# ------------------------------------------------------------ earlier runs
def replicate_history(source: Path, target: Path, step_labels: int) -> int:
    """Fill `target` (a copy of warehouse `source`, which holds one run) with copies of that run until
    it holds at least `step_labels` step labels; returns how many it holds."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    shutil.copytree(source, target)
    tables = target / "tables"
    [run_dir] = {p.parent.name for p in (tables / "step_labels").glob("run_id=*/*.parquet")}
    per_copy = sum(pq.read_metadata(p).num_rows for p in (tables / "step_labels" / run_dir).glob("*.parquet"))
    copies = max(0, -(-step_labels // per_copy) - 1)
    renamed = ("problem_id", "rollout_id", "node_id", "parent_id", "completion_id", "judgment_id", "rubric_id",
               "request_key")
    for i in range(copies):
        run_id = f"earlier-{i:03d}"
        for table_dir in tables.iterdir():
            for path in (table_dir / run_dir).glob("*.parquet"):
                data = pq.read_table(path)
                for name in data.column_names:
                    col = data.column(name)
                    if name == "run_id":
                        col = pa.array([run_id] * data.num_rows, col.type)
                    elif name in renamed or (name == "labeling_version" and table_dir.name == "run_problems"):
                        col = pc.binary_join_element_wise(f"e{i}-", col, "")
                    else:
                        continue
                    data = data.set_column(data.column_names.index(name), name, col)
                out = table_dir / f"run_id={run_id}" / path.name
                out.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(data, out, compression="zstd")
    return per_copy * (copies + 1)


def _copy_answers_into_store(root: Path, code: Path) -> None:
    """Give a warehouse's answer store every `llm_cache` answer (the SQLite store imports them once
    when first opened; the journal-based cache has no store), and write its prm.duckdb for where it
    now lies: earlier runs leave both behind, and the views file names the warehouse's path, so a
    copied warehouse would otherwise rewrite it in the measured run. Not timed."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run([sys.executable, "-c", "import sys\nfrom prm_data.llm import cache\nfrom prm_data.warehouse "
                    "import Warehouse\nif hasattr(cache, 'connect_store'):\n    cache.connect_store("
                    "Warehouse(sys.argv[1])).close()\nif hasattr(Warehouse, 'sync_views'):\n"
                    "    Warehouse(sys.argv[1]).sync_views()", str(root)], env=env, cwd=root, check=True)


# ------------------------------------------------------------ the request cache alone
FILL = """
import hashlib, json, random, sys
from prm_data.llm import cache
from prm_data.warehouse import Warehouse
root, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
con = cache.connect_store(Warehouse(root), fsync=False)
rng, words = random.Random(start), "the step adds so we get therefore answer is total of".split()
def row(i):
    text = " ".join(rng.choice(words) for _ in range(rng.randint(25, 120)))[:600]
    return (hashlib.sha256(str(i).encode()).hexdigest(), f"earlier-{i // 100000:03d}", "fill", "sim", "sim-policy",
            text, "stop", 200, len(text) // 4, 0.01, json.dumps({"true_first_error": i % 5}), "2026-12-01T00:00:00")
con.execute("BEGIN")
con.executemany(cache._INSERT, (row(i) for i in range(start, stop)))
con.execute("COMMIT")
con.close()
"""
OPEN = """
import hashlib, json, random, sys, time
def rss():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) / 1024 for l in fh if l.startswith("VmRSS"))
from prm_data.llm.cache import RequestCache
from prm_data.warehouse import Warehouse
root, stored = sys.argv[1], int(sys.argv[2])
wh = Warehouse(root)
before = rss()
t0 = time.perf_counter()
c = RequestCache(wh, "measured")
open_s = time.perf_counter() - t0
opened = rss()
rng = random.Random(0)
keys = [hashlib.sha256(str(rng.randrange(stored) if k % 2 else stored + k).encode()).hexdigest() for k in range(2000)]
t0 = time.perf_counter()
found = sum(c.get(k) is not None for k in keys)
get_s = time.perf_counter() - t0
print(json.dumps({"answers": stored, "open_ms": 1e3 * open_s, "rss_growth_open_mb": opened - before,
                  "rss_growth_after_lookups_mb": rss() - before, "lookup_us": 1e6 * get_s / len(keys),
                  "hits": found, "lookups": len(keys)}))
"""


def measure_cache(code: Path, folder: Path, counts: list[int]) -> list[dict]:
    """Open the request cache of one warehouse as it grows to each of `counts` answers (see the docstring)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    env.pop("PRM_DATA_WAREHOUSE", None)
    root, stored, out = folder / "wh", 0, []
    for n in sorted(counts):
        for start in range(stored, n, 1_000_000):  # in pieces: one transaction of 10M rows is a large WAL
            subprocess.run([sys.executable, "-c", FILL, str(root), str(start), str(min(n, start + 1_000_000))],
                           env=env, cwd=folder, check=True)
        stored = n
        runs = [json.loads(subprocess.run([sys.executable, "-c", OPEN, str(root), str(n)], env=env, cwd=folder,
                                          check=True, capture_output=True, text=True).stdout.splitlines()[-1])
                for _ in range(3)]
        r = sorted(runs, key=lambda r: r["open_ms"])[1]  # the median open of three fresh processes
        r["store_mb"] = sum(p.stat().st_size for p in root.glob("llm_cache.sqlite*")) / 2**20
        out.append(r)
        print(f"request cache with {n:,} answers ({r['store_mb']:.0f} MB): open {r['open_ms']:.1f} ms, "
              f"+{r['rss_growth_open_mb']:.1f} MB RSS, lookup {r['lookup_us']:.0f} us, "
              f"+{r['rss_growth_after_lookups_mb']:.1f} MB after {r['lookups']} lookups", flush=True)
    return out


# ------------------------------------------------------------------ driver
def run(sizes: list[int], history: int, history_size: int, codes: dict[str, Path], keep: Path | None,
        cache_answers: list[int] = ()) -> dict:
    work = Path(keep or tempfile.mkdtemp(prefix="pipeline-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"sizes": {}, "history": {}, "history_labels": None, "cache": {}}
    try:
        if cache_answers:
            for name, code in codes.items():
                (work / f"{name}-cache").mkdir()
                results["cache"][name] = measure_cache(code, work / f"{name}-cache", cache_answers)
        for n in sizes:
            for name, code in codes.items():
                folder = work / f"{name}-{n}"
                folder.mkdir()
                results["sizes"].setdefault(str(n), {})[name] = r = measure(
                    code, write_config(folder, n, folder / "wh"), folder)
                print(f"{name:8s} {n:6d} problems: {r['step_labels']} labels, {r['ms_per_label']:.3f} ms/label "
                      f"wall, {r['cpu_ms_per_label']:.3f} ms/label CPU, peak {r['peak_rss_mb']:.0f} MB", flush=True)
        if history:
            seed = work / "history-seed"
            seed.mkdir()
            # the run copied as history: other problems (bank seed 1) than the measured run's (seed 0)
            measure(REPO, write_config(seed, history_size, seed / "wh", bank_seed=1), seed)
            for name, code in codes.items():
                folder = work / f"{name}-history"
                folder.mkdir()
                results["history_labels"] = replicate_history(seed / "wh", folder / "wh", history)
                for store in (folder / "wh").glob("llm_cache.sqlite*"):
                    store.unlink()  # holds the seed run's answers only; rebuilt from every copy's shards
                _copy_answers_into_store(folder / "wh", code)
                results["history"][name] = r = measure(code, write_config(folder, history_size, folder / "wh"),
                                                       folder)
                print(f"{name:8s} {history_size:6d} problems on {results['history_labels']} earlier labels: "
                      f"{r['ms_per_label']:.3f} ms/label wall, {r['cpu_ms_per_label']:.3f} ms/label CPU, "
                      f"peak {r['peak_rss_mb']:.0f} MB", flush=True)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return results


def table(results: dict) -> str:
    lines = ["| code | problems | earlier labels | step labels | wall ms/label | CPU ms/label | peak RSS MB | "
             "slowest stages (s) | peak RSS by stage (MB) |", "|---|---|---|---|---|---|---|---|---|"]

    def row(name, n, earlier, r):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["stages_s"].items(), key=lambda kv: -kv[1])[:4])
        memory = ", ".join(f"{k} {v}" for k, v in (r.get("stage_peak_rss_mb") or {}).items())
        lines.append(f"| {name} | {n} | {earlier} | {r['step_labels']:,} | {r['ms_per_label']:.3f} | "
                     f"{r['cpu_ms_per_label']:.3f} | {r['peak_rss_mb']:.0f} | {stages} | {memory} |")

    for n, by_code in results["sizes"].items():
        for name, r in by_code.items():
            row(name, n, 0, r)
    for name, r in results["history"].items():
        row(name, "history", f"{results['history_labels']:,}", r)
    if any(results.get("cache", {}).values()):
        lines += ["", "| code | stored answers | store MB | open ms | RSS growth by opening MB | lookup us | "
                  "RSS growth after 2,000 lookups MB |", "|---|---|---|---|---|---|---|"]
        for name, measured in results["cache"].items():
            lines += [f"| {name} | {r['answers']:,} | {r['store_mb']:.0f} | {r['open_ms']:.1f} | "
                      f"{r['rss_growth_open_mb']:.1f} | {r['lookup_us']:.0f} | {r['rss_growth_after_lookups_mb']:.1f} |"
                      for r in measured]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[240, 1200, 12000], help="Bank sizes (problems).")
    ap.add_argument("--history", type=int, default=1_000_000, help="Earlier step labels (0: skip).")
    ap.add_argument("--history-size", type=int, default=240, help="Problems of the run on the full warehouse.")
    ap.add_argument("--code", action="append", default=None, metavar="NAME=DIR",
                    help="A checkout to measure, named (repeatable; default: new=this checkout). "
                         "E.g. --code new=. --code main=/tmp/old-main")
    ap.add_argument("--out", type=Path, default=RESULTS / "pipeline_scale.json", help="Results file.")
    ap.add_argument("--merge", type=Path, nargs="*", default=None,
                    help="Only print the table of these results files together.")
    ap.add_argument("--keep", type=Path, default=None, help="Keep the warehouses in this folder.")
    ap.add_argument("--cache-answers", type=int, nargs="*", default=[],
                    help="Measure opening the request cache holding each of these numbers of answers.")
    args = ap.parse_args()
    if args.merge:
        merged: dict = {"sizes": {}, "history": {}, "history_labels": None, "cache": {}}
        for path in args.merge:
            part = json.loads(path.read_text())
            for n, by_code in part["sizes"].items():
                merged["sizes"].setdefault(n, {}).update(by_code)
            merged["history"].update(part["history"])
            merged["cache"].update(part.get("cache") or {})
            merged["history_labels"] = part["history_labels"] or merged["history_labels"]
        if "--out" in sys.argv:
            args.out.write_text(json.dumps(merged, indent=2))
        print(table(merged))
        return
    codes = dict(c.split("=", 1) for c in args.code) if args.code else {"new": str(REPO)}
    results = run(args.sizes, args.history, args.history_size, {k: Path(v).resolve() for k, v in codes.items()},
                  args.keep, args.cache_answers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
