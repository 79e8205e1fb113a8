"""`prm-data export` at 10M step labels: the stepwise config alone against every config, same process.

The warehouse is benchmarks/warehouse_scale.py's synthetic campaign (imported, not
copied): 666k rollouts of 3-7 steps, three labelers per step (`tool_verify` among
them, with `{"verdict": ...}` evidence and no checks), one consensus final label per
step, `stepwise_rows` built as the aggregate stage writes them; no judgments and no
prefix trees (so `pairs` has no rows and every `verifier_sft` candidate comes from the
tool verifier). Timed, alternating, `--repeats` times each, median reported:

- `stepwise`: `run_export` with the stepwise config alone (query, split, datasets,
  Parquet and the save_to_disk-layout copy, card);
- `default configs`: `run_export` with the three configs built by default
  (stepwise, pairs, processbench), to tell the new configs' share;
- `every config`: `run_export` with all six configs (stepwise, pairs, processbench,
  rl_rewards with the default clip_delta transform and character offsets only,
  openrlhf, verifier_sft);
- once each, the build of one trainer config from the stepwise rows (no writing),
  and `rl_rewards` with token offsets for a byte-level BPE tokenizer trained on a
  sample of the steps (`prm_data.train.tiny.train_tokenizer`, 1024 tokens) on the
  first `--token-rows` rollouts (20k).

Each run records its wall seconds and the process's CPU seconds (user + system, every
thread: DuckDB's, Arrow's and the export's writer threads included): on a machine shared
with other jobs the wall time swings with their load, while the CPU seconds measure the
work done. The 1-minute load average is recorded before and after every run.

Goal (issue 19): every config within 2x of the stepwise config alone.

Run: `python benchmarks/export_scale.py [--rows 10000000] [--repeats 3]`; prints a
table and writes benchmarks/results/export_scale.json.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from warehouse_scale import RESULTS, campaign, write_all, write_final  # noqa: E402

from prm_data.export import DEFAULT_FORMATS, FORMATS, ExportConfig, _query  # noqa: E402
from prm_data.export_run import run_export
from prm_data.exports.formats import TrainerExportOptions, build_trainer_format  # noqa: E402
from prm_data.exports.step_offsets import load_tokenizer  # noqa: E402
from prm_data.warehouse import Warehouse  # noqa: E402

GOAL_RATIO = 2.0


def build_warehouse(folder: Path, rows: int, shard_rows: int = 1_000_000, writers: int = 2) -> Warehouse:
    tables = campaign(rows)
    wh = Warehouse(folder)
    final_labels = tables.pop("final_labels")
    write_all(wh, tables, shard_rows, writers)
    write_final(wh, final_labels, shard_rows, writers)
    return wh


def time_export(wh: Warehouse, out: Path, formats: tuple[str, ...]) -> tuple[float, float, dict]:
    """Wall and CPU seconds of one `run_export`, and its counts."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = run_export(wh, out, ExportConfig(policy="consensus", formats=formats))
    return time.perf_counter() - t0, time.process_time() - c0, result.counts


def time_builds(wh: Warehouse, tokenizer: str, token_rows: int) -> dict:
    """Each trainer config built once from the stepwise rows; rl_rewards also with token offsets, on the
    first `token_rows` rollouts (tokenizing is the cost there, linear in the text)."""
    config = ExportConfig(policy="consensus")
    t0 = time.perf_counter()
    stepwise = _query(wh, "stepwise", config)
    out = {"stepwise_query_s": time.perf_counter() - t0}
    runs = [(name, TrainerExportOptions()) for name in ("rl_rewards", "openrlhf", "verifier_sft")]
    runs.append(("rl_rewards+tokens", TrainerExportOptions(tokenizer=tokenizer)))
    load_tokenizer(tokenizer)  # loading (imports included) is not the per-row cost
    for label, options in runs:
        rows = stepwise.slice(0, token_rows) if label.endswith("tokens") else stepwise
        t0 = time.perf_counter()
        built = build_trainer_format(label.split("+")[0], wh, rows, options, config.step_policy)
        out[f"{label}_build_s"] = time.perf_counter() - t0
        out[f"{label}_rows"] = built.table.num_rows
    return out


def sample_tokenizer(wh: Warehouse, folder: Path) -> str:
    from prm_data.train.tiny import train_tokenizer

    texts = [r["text"] for r in wh.rows("SELECT text FROM steps USING SAMPLE 20000 ROWS")]
    train_tokenizer(texts, 1024).save_pretrained(str(folder))
    return str(folder)


def run(rows: int = 10_000_000, repeats: int = 3, root: str | None = None, out_dir: Path | None = RESULTS,
        token_rows: int = 20_000) -> dict:
    folder = Path(root) if root else Path(tempfile.mkdtemp(prefix="prm-export-scale-"))
    try:
        t0 = time.perf_counter()
        reuse = root and (folder / "wh" / "tables" / "stepwise_rows").exists()
        wh = Warehouse(folder / "wh") if reuse else build_warehouse(folder / "wh", rows)
        build_s = time.perf_counter() - t0
        times: dict[str, list[float]] = {"stepwise": [], "default_configs": [], "every_config": []}
        cpu: dict[str, list[float]] = {name: [] for name in times}
        loads: dict[str, list[list[float]]] = {name: [] for name in times}
        counts = {}
        for _ in range(repeats):  # alternate, so drifting load hits both alike
            for name, formats in (("stepwise", ("stepwise",)), ("default_configs", DEFAULT_FORMATS),
                                  ("every_config", FORMATS)):
                before = os.getloadavg()[0]
                seconds, cpu_seconds, counts[name] = time_export(wh, folder / f"out-{name}", formats)
                loads[name].append([round(before, 2), round(os.getloadavg()[0], 2)])
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
        builds = time_builds(wh, sample_tokenizer(wh, folder / "tok"), token_rows)
    finally:
        if not root:
            shutil.rmtree(folder, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    cpu_medians = {k: statistics.median(v) for k, v in cpu.items()}
    results = {
        "step_labels": rows, "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0], "repeats": repeats,
        "warehouse_build_s": build_s, "seconds": times, "median_s": medians,
        "cpu_seconds": cpu, "median_cpu_s": cpu_medians, "load_average_before_after": loads,
        "ratio_every_config_to_stepwise": medians["every_config"] / medians["stepwise"],
        "ratio_default_configs_to_stepwise": medians["default_configs"] / medians["stepwise"],
        "cpu_ratio_every_config_to_stepwise": cpu_medians["every_config"] / cpu_medians["stepwise"],
        "goal_ratio": GOAL_RATIO, "counts": counts["every_config"], "builds": builds,
    }
    results["goal_met"] = results["ratio_every_config_to_stepwise"] <= GOAL_RATIO
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "export_scale.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def table(results: dict) -> str:
    m = results["median_s"]
    lines = [f"export at {results['step_labels']:,} step labels ({results['cpus']} CPUs, load average "
             f"{results['load_average_1m']:.1f}, median of {results['repeats']})", "",
             f"{'stepwise alone (s)':<34}{m['stepwise']:>10.2f}   runs {', '.join(f'{s:.2f}' for s in results['seconds']['stepwise'])}",
             f"{'stepwise, pairs, processbench (s)':<34}{m['default_configs']:>10.2f}   runs "
             f"{', '.join(f'{s:.2f}' for s in results['seconds']['default_configs'])}",
             f"{'every config (s)':<34}{m['every_config']:>10.2f}   runs {', '.join(f'{s:.2f}' for s in results['seconds']['every_config'])}",
             f"{'ratio (goal <= 2.0)':<34}{results['ratio_every_config_to_stepwise']:>10.2f}   "
             f"{'met' if results['goal_met'] else 'NOT met'}",
             f"{'CPU s: stepwise, every config':<34}{results['median_cpu_s']['stepwise']:>10.2f}"
             f"{results['median_cpu_s']['every_config']:>10.2f}   ratio "
             f"{results['cpu_ratio_every_config_to_stepwise']:.2f}", ""]
    for key, value in results["builds"].items():
        lines.append(f"{key:<34}{value:>10.2f}" if key.endswith("_s") else f"{key:<34}{value:>10,}")
    lines += ["", "rows: " + json.dumps(results["counts"])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="step_labels rows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--token-rows", type=int, default=20_000, help="rollouts tokenized for the token offsets")
    parser.add_argument("--root", default=None, help="keep the warehouse here instead of a deleted temp folder "
                        "(and reuse the one already there)")
    args = parser.parse_args()
    print(table(run(args.rows, args.repeats, args.root, token_rows=args.token_rows)))


if __name__ == "__main__":
    main()
