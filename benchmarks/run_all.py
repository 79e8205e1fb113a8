"""Every benchmark of the project in one command, with each figure next to its goal.

    python benchmarks/run_all.py [--quick] [--only NAME ...] [--out DIR]

Runs each benchmark module's `run(quick=...)` in turn — labeling cost vs
accuracy (labeling_cost), judges, tools, consensus and probes (judging),
orchestration vs server capacity and local model throughput (llm_throughput),
the warehouse at scale (warehouse_scale) — and prints one table: benchmark,
figure, value, goal, met. Each module's JSON (and its PNG, where it draws one)
lands in benchmarks/results/; this command adds run_all.json (the table, the
time each benchmark took, the machine's load) and summary.png (every figure as a
share of its goal). A benchmark that fails is reported as such and the others
still run; the exit code is 1 when one failed, 0 otherwise (a missed goal is a
result, not a failure).

Goals come from the issues and papers each benchmark cites: the warehouse's
from issue 8 (queries < 1 s, writes >= 1M rows/s); labeling cost's from
OmegaPRM (binary search at least as accurate as per-step Monte Carlo with >= 3x
fewer tokens, >= 95% first-error accuracy); judging's from majority-vote
theory (5 judges at 0.7 -> 0.837) and the consensus filter of Qwen2.5-Math-PRM
(consensus at least as accurate as Monte Carlo alone); the model layer's from
its own (>= 90% of the server's capacity).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BENCHMARKS = ("labeling_cost", "judging", "llm_throughput", "warehouse_scale")


@dataclass
class Figure:
    benchmark: str
    figure: str
    value: float | None
    op: str | None = None  # ">=" or "<=" against `target`; None: reported, no goal
    target: float | None = None
    unit: str = ""

    @property
    def met(self) -> bool | None:
        if self.op is None or self.value is None:
            return None
        return self.value >= self.target if self.op == ">=" else self.value <= self.target

    @property
    def headroom(self) -> float | None:
        """Value as a share of its goal, >= 1 when met (for the summary plot)."""
        if self.op is None or not self.value or not self.target:
            return None
        return self.value / self.target if self.op == ">=" else self.target / self.value


# ------------------------------------------------------------ what each reports
def labeling_cost_figures(r: dict) -> list[Figure]:
    out = []
    for name, setting in r["settings"].items():
        g = setting["goals"]["paper_binary_search"]
        out += [Figure("labeling_cost", f"{name}: binary search first-error accuracy", g["accuracy"], ">=", 0.95),
                Figure("labeling_cost", f"{name}: binary search accuracy - MC k=8", g["accuracy_minus_baseline"],
                       ">=", 0.0),
                Figure("labeling_cost", f"{name}: token reduction vs MC k=8", g["token_reduction"], ">=", 3.0, "x")]
        if "advantage" in setting["goals"]:  # issue 16: no more tokens than MC k=8, no less accurate
            a = setting["goals"]["advantage"]
            out += [Figure("labeling_cost", f"{name}: advantage labels accuracy - MC k=8", a["accuracy_minus_baseline"],
                           ">=", 0.0),
                    Figure("labeling_cost", f"{name}: advantage labels tokens / MC k=8", a["tokens_over_baseline"],
                           "<=", 1.0, "x")]
    return out


def judging_figures(r: dict) -> list[Figure]:
    tv, j, c, rb, pr = r["tool_verification"]["default"], r["judges"], r["consensus"], r["rubrics"], r["probes"]
    return [
        Figure("judging", "tools: arithmetic errors caught", tv["catch_rate"]["arithmetic"], ">=", 1.0),
        Figure("judging", "tools: false alarms on correct steps", tv["false_alarm_rate"], "<=", 0.01),
        Figure("judging", "5 judges: step accuracy (theory 0.837)", j["per_step_5"]["step_accuracy"], ">=",
               round(j["per_step_5"]["theory_per_step"] - 0.02, 3)),
        Figure("judging", "consensus: first-error accuracy (>= MC alone)", c["consensus"]["first_error_accuracy"],
               ">=", c["mc_only"]["first_error_accuracy"]),
        Figure("judging", "rubric-graded step accuracy (>= plain)", rb["rubric_graded"]["step_accuracy"], ">=",
               rb["plain"]["step_accuracy"]),
        Figure("judging", "hackable judge refused by probes", float(pr["hackable"]["refused"]), ">=", 1.0),
        Figure("judging", "honest judge accepted by probes", float(not pr["honest"]["refused"]), ">=", 1.0),
    ]


def llm_throughput_figures(r: dict) -> list[Figure]:
    goal = r.get("goal", {}).get("openai_ratio_min", 0.9)
    out = [Figure("llm_throughput", f"openai {x['slots']} slots, {x['continuation']}: share of capacity",
                  x["ratio"], ">=", goal) for x in r["openai_vs_capacity"]]
    out += [Figure("llm_throughput", f"local batch {x['batch']}: pipeline tok/s", x["pipeline_tok_s"], unit="tok/s")
            for x in r["local_vs_raw"]]
    out += [Figure("llm_throughput", f"local batch {x['batch']}: pipeline / raw generate", x["ratio"], unit="x")
            for x in r["local_vs_raw"]]
    return out


def warehouse_scale_figures(r: dict) -> list[Figure]:
    g = r["goals"]
    n = f"{r['step_labels'] / 1e6:.1f}M labels"
    out = [Figure("warehouse_scale", f"{n}: write rows/s", r["write"]["rows_per_s"], ">=", g["write_rows_per_s"]),
           Figure("warehouse_scale", f"{n}: final labels + stepwise rows, rows/s",
                  r["final_labels_write"]["rows_per_s"]),
           Figure("warehouse_scale", f"{n}: size on disk", r["disk_mb_total"], unit="MB"),
           Figure("warehouse_scale", f"{n}: stepwise export, whole", r["export"]["seconds"], unit="s")]
    if "label_writes" in r:  # the label stage's own write, from what the labelers fill (issue 15)
        lw = r["label_writes"]
        out += [Figure("warehouse_scale", f"{lw['labels'] / 1e3:.0f}k labels: label stage write, rows per CPU s",
                       lw["paths"]["columns"]["write_rows_per_cpu_s"], ">=", g["write_rows_per_s"]),
                Figure("warehouse_scale", f"{lw['labels'] / 1e3:.0f}k labels: label stage write, "
                       f"{lw['parallel']['workers']} workers, rows/s", lw["parallel"]["write_rows_per_s"],
                       ">=", g["write_rows_per_s"])]
    out += [Figure("warehouse_scale", f"{n}: {name} query", q["median_s"], "<=", g["query_s"], "s")
            for name, q in r["queries"].items()]
    return out


FIGURES = {"labeling_cost": labeling_cost_figures, "judging": judging_figures,
           "llm_throughput": llm_throughput_figures, "warehouse_scale": warehouse_scale_figures}


# --------------------------------------------------------------------- running
def run_one(name: str, quick: bool, out_dir: Path) -> dict:
    """Import benchmarks/<name>.py, call its run(quick=...), make sure its JSON is in out_dir."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    module = importlib.import_module(name)
    params = inspect.signature(module.run).parameters
    kwargs = {"quick": quick}
    if "out_dir" in params:
        kwargs["out_dir"] = out_dir
    results = module.run(**kwargs)
    if "out_dir" not in params:  # judging returns its results only; llm_throughput writes to benchmarks/results
        (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


def run_all(names=BENCHMARKS, quick: bool = False, out_dir: Path = RESULTS) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    runs = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            results = run_one(name, quick, out_dir)
            figures += FIGURES[name](results)
            runs[name] = {"ok": True, "seconds": round(time.perf_counter() - t0, 1)}
        except Exception as exc:  # one broken benchmark must not hide the others' numbers
            runs[name] = {"ok": False, "seconds": round(time.perf_counter() - t0, 1),
                          "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    summary = {"quick": quick, "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0], "runs": runs,
               "figures": [asdict(f) | {"met": f.met} for f in figures],
               "plots": sorted(p.name for p in out_dir.glob("*.png") if p.name != "summary.png")}
    (out_dir / "run_all.json").write_text(json.dumps(summary, indent=2) + "\n")
    if figures:
        plot(figures, out_dir / "summary.png")
        summary["plots"].append("summary.png")
    return summary


def table(summary: dict) -> str:
    def fmt(v, unit=""):
        if v is None:
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}{' ' + unit if unit else ''}"
        return f"{v:.3g}{' ' + unit if unit else ''}"

    rows = [("benchmark", "figure", "value", "goal", "met")]
    for f in summary["figures"]:
        goal = f"{f['op']} {fmt(f['target'], f['unit'])}" if f["op"] else "-"
        met = "-" if f["met"] is None else ("yes" if f["met"] else "NO")
        rows.append((f["benchmark"], f["figure"], fmt(f["value"], f["unit"]), goal, met))
    for name, r in summary["runs"].items():
        if not r["ok"]:
            rows.append((name, "FAILED TO RUN", r["error"][:60], "", "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    took = ", ".join(f"{n} {r['seconds']} s" for n, r in summary["runs"].items())
    lines += ["", f"{summary['cpus']} CPUs, load average {summary['load_average_1m']:.1f}; {took}",
              f"plots: {', '.join(summary['plots']) or 'none'}"]
    return "\n".join(lines)


def plot(figures: list[Figure], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [f for f in figures if f.headroom is not None]
    if not shown:
        return
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(shown) + 1.5))
    labels = [f"{f.benchmark}: {f.figure}" for f in shown]
    values = [min(f.headroom, 10.0) for f in shown]
    ax.barh(labels, values, color=["#2a9d8f" if f.met else "#e76f51" for f in shown])
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("figure as a share of its goal (>= 1: met; capped at 10)")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark's small version")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON and PNG files go")
    args = parser.parse_args(argv)
    summary = run_all(args.only or BENCHMARKS, args.quick, args.out)
    print(table(summary))
    return 0 if all(r["ok"] for r in summary["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
