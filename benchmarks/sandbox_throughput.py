"""Code-sandbox throughput: isolated runs per second, beside the same code run unisolated.

Each snippet is the kind of code a solution step carries (one-line arithmetic, a
loop over fractions, a helper function with math, statistics, a sympy solve),
run through `prm_data.labelers.sandbox.run_python` (a fresh bubblewrap sandbox per
run: namespaces, uid drop, private tmpfs, limits) by 1 and by 2 worker threads
(each run is its own process tree, so threads are enough to load both cores).
The baseline, measured in the same process right beside it, is the same snippet
in a bare subprocess of the same interpreter with the same flags and sys.path
(`-I -S -B`, site-packages appended) and no isolation at all: the ratio is what
the isolation costs. Both start a fresh interpreter per run, as the labeler does.

Run: `python benchmarks/sandbox_throughput.py [--quick]`; prints a table and
writes benchmarks/results/sandbox_throughput.json. Numbers depend on the machine
and on what else runs on it: the load average at the start is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prm_data.labelers.sandbox import SandboxConfig, isolation_problem, run_python

RESULTS = Path(__file__).resolve().parent / "results"
SNIPPETS = {
    "one_line": "print(70 + 99 + 70)",
    "fraction_loop": "from fractions import Fraction\ntotal = sum(Fraction(1, k) for k in range(1, 40))\n"
                     "print(total.numerator % 1000)",
    "function_math": "import math\n\ndef area(r):\n    return math.pi * r * r\n\nprint(round(area(3.5), 2))",
    "statistics": "import statistics\nscores = [12, 15, 22, 9, 30]\nprint(statistics.mean(scores), "
                  "statistics.median(scores))",
    "sympy_solve": "import sympy as sp\nx = sp.symbols('x')\nprint(sp.solve(2 * x + 3 - 13, x)[0])",
}
CONFIG = SandboxConfig(wall_seconds=60, cpu_seconds=30)


def _unisolated(code: str) -> tuple[bool, str]:
    """The same interpreter, flags and sys.path as inside the sandbox (-I -S -B, site-packages appended)."""
    from prm_data.labelers import sandbox_jail

    boot = f"import sys\nsys.path.extend({sandbox_jail.site_packages()!r})\nexec(compile(sys.stdin.read(), 'main.py', 'exec'))"
    proc = subprocess.run([sandbox_jail.interpreter(), "-I", "-S", "-B", "-c", boot], input=code, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    return proc.returncode == 0, proc.stdout


def _isolated(code: str) -> tuple[bool, str]:
    result = run_python(code, CONFIG)
    return result.ok, result.stdout


def breakdown(runs: int) -> dict:
    """Median wall time of the pieces of one run, interleaved: bubblewrap alone (namespaces and
    mounts, then /usr/bin/true), a bare interpreter start, and a whole sandboxed `pass`."""
    from prm_data.labelers import sandbox_jail
    from prm_data.labelers.sandbox import _limits

    argv = sandbox_jail.command(sandbox_jail.bwrap_path(), tmp_bytes=CONFIG.tmp_mb << 20,
                                run_as_uid=CONFIG.run_as_uid, limits=_limits(CONFIG))
    bwrap_only = argv[:argv.index("--") + 1] + ["/usr/bin/true"]
    pieces = {"bwrap_namespaces_and_mounts": lambda: subprocess.run(bwrap_only, env={}, check=True),
              "bare_interpreter_start": lambda: subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], env={},
                                                               check=True),
              "whole_sandboxed_run": lambda: run_python("pass", CONFIG)}
    times: dict[str, list[float]] = {k: [] for k in pieces}
    for _ in range(runs):
        for name, fn in pieces.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: round(1000 * statistics.median(v), 1) for k, v in times.items()}


def measure(runner, code: str, runs: int, workers: int) -> dict:
    """Runs per second and latency of `runs` runs of `code` by `workers` threads."""
    latencies: list[float] = []

    def one(_):
        t0 = time.perf_counter()
        ok, out = runner(code)
        latencies.append(time.perf_counter() - t0)
        return ok, out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(one, range(runs)))
    wall = time.perf_counter() - t0
    outputs = {out for _, out in outcomes}
    return {"runs": runs, "workers": workers, "failed": sum(not ok for ok, _ in outcomes),
            "distinct_outputs": len(outputs), "runs_per_s": round(runs / wall, 2),
            "median_latency_ms": round(1000 * statistics.median(latencies), 1)}


def run(quick: bool = False) -> dict:
    problem = isolation_problem()
    if problem is not None:
        raise SystemExit(f"sandbox unavailable: {problem}")
    runs = 6 if quick else 20
    out = {"machine": {"cpus": os.cpu_count(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
                       "python": platform.python_version(), "kernel": platform.release()},
           "assumptions": "fresh interpreter per run (as tool_verify does); baseline = same code in a bare "
                          "subprocess of the same interpreter, same flags and sys.path, no isolation; 1 and 2 worker threads",
           "snippets": {}, "median_ms_per_piece": breakdown(runs)}
    for name, code in SNIPPETS.items():
        n = max(4, runs // 3) if name == "sympy_solve" else runs
        row = {}
        for workers in (1, 2):
            # interleave baseline and sandbox so both see the same machine load
            base = measure(_unisolated, code, n, workers)
            boxed = measure(_isolated, code, n, workers)
            row[f"workers_{workers}"] = {"sandbox": boxed, "unisolated": base,
                                         "sandbox_over_unisolated_rate": round(boxed["runs_per_s"]
                                                                               / base["runs_per_s"], 3)}
        out["snippets"][name] = row
    return out


def show(result: dict) -> None:
    print(f"load average at start {result['machine']['load_avg_at_start']}, {result['machine']['cpus']} cpus")
    print("median ms per piece of one run: " + ", ".join(f"{k} {v}" for k, v in result["median_ms_per_piece"].items()))
    print(f"{'snippet':<15} {'workers':>7} {'sandbox runs/s':>15} {'median ms':>10} "
          f"{'unisolated runs/s':>18} {'median ms':>10} {'ratio':>6}")
    for name, row in result["snippets"].items():
        for key, cell in row.items():
            s, u = cell["sandbox"], cell["unisolated"]
            print(f"{name:<15} {s['workers']:>7} {s['runs_per_s']:>15} {s['median_latency_ms']:>10} "
                  f"{u['runs_per_s']:>18} {u['median_latency_ms']:>10} {cell['sandbox_over_unisolated_rate']:>6}"
                  + ("" if s["failed"] == 0 else f"  ({s['failed']} failed)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs per cell")
    args = parser.parse_args()
    result = run(args.quick)
    show(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "sandbox_throughput.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
