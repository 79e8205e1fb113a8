"""`python benchmarks/run_all.py`: one command, one table with every figure next to its goal.

The full set of benchmarks takes minutes; here the command runs the warehouse benchmark
(quick), and the figure extractors are checked against the result files the other
benchmarks committed in benchmarks/results/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import run_all  # noqa: E402


@pytest.mark.slow
def test_the_command_runs_a_benchmark_and_prints_each_figure_with_its_goal(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--quick", "--only", "warehouse_scale",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "write rows/s" in proc.stdout and ">= 1,000,000" in proc.stdout
    assert "first_error query" in proc.stdout and "<= 1 s" in proc.stdout
    summary = json.loads((tmp_path / "run_all.json").read_text())
    assert summary["runs"]["warehouse_scale"]["ok"] is True
    queries = [f for f in summary["figures"] if f["figure"].endswith(" query")]
    assert len(queries) == 5 and all(isinstance(f["met"], bool) for f in queries)
    assert (tmp_path / "warehouse_scale.json").exists()
    assert {"warehouse_scale.png", "summary.png"} <= {p.name for p in tmp_path.glob("*.png")}


def test_a_benchmark_that_cannot_run_is_reported_and_the_others_still_run(tmp_path):
    summary = run_all.run_all(["no_such_benchmark"], quick=True, out_dir=tmp_path)
    assert summary["runs"]["no_such_benchmark"]["ok"] is False
    assert summary["runs"]["no_such_benchmark"]["error"].startswith("ModuleNotFoundError")
    assert "FAILED TO RUN" in run_all.table(summary)
    assert json.loads((tmp_path / "run_all.json").read_text())["runs"] == summary["runs"]


@pytest.mark.parametrize("name", ["labeling_cost", "judging", "llm_throughput"])
def test_every_benchmark_result_file_yields_figures_with_goals(name):
    path = BENCH / "results" / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{path.name} not produced yet")
    figures = run_all.FIGURES[name](json.loads(path.read_text()))
    assert figures and any(f.op for f in figures)
    assert all(f.value is not None for f in figures)
    table = run_all.table({"figures": [vars(f) | {"met": f.met} for f in figures], "runs": {}, "cpus": 2,
                           "load_average_1m": 0.0, "plots": []})
    assert all(f.figure in table for f in figures)
