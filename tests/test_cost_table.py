"""Every paid token is in exactly one row of the run's cost table, and the table sums to what the server served.

A real `prm-data run` process labels with every model-calling labeler (rollouts, the Monte Carlo tree
search that mc_value, omega_prm and progress share, the judge-hacking probes, the judges) against the
sim OpenAI-compatible server (`prm_data/serve_sim.py`), which counts the tokens of every answer it delivered.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prm_data.pipeline.summary import summary_markdown
from prm_data.serve_sim import SimServer
from prm_data.warehouse import Warehouse

CLI = Path(sys.executable).with_name("prm-data")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served_run(tmp_path_factory):
    if not CLI.exists():
        pytest.skip("console script not installed (pip install -e .)")
    home = tmp_path_factory.mktemp("costs")
    with SimServer() as server:
        def backend(model):
            return {"kind": "openai", "model": model, "base_urls": [server.url], "api_key_env": None}

        config = {
            "name": "costs", "problems": {"source": "bank:6:3:0"}, "rollouts": {"n": 4},
            "policy": backend("sim-policy"), "judges": {"judge": backend("sim-judge")},
            "labeling": {"labelers": ["mc_value", "omega_prm", "progress", "tool_verify", "judge_vote"],
                         "mc_value": {"k": 4}, "judge_vote": {"mode": "per_step",
                                                              "judges": [{"name": "judge", "samples": 2}]}},
            "aggregate": {"policy": "consensus"}, "export": {"enabled": False},
        }
        (home / "run.yaml").write_text(yaml.safe_dump(config))
        done = subprocess.run([str(CLI), "--warehouse", "wh", "run", "-c", "run.yaml", "--serial"], cwd=home,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        served = dict(server.served)
    summary = json.loads(Warehouse(home / "wh").rows(
        "SELECT summary FROM runs WHERE status = 'completed' ORDER BY finished_at DESC LIMIT 1")[0]["summary"])
    return summary, served, done.stdout


def test_the_cost_table_sums_to_what_the_server_served(served_run):
    summary, served, _ = served_run
    costs = summary["costs"]
    assert sum(c["calls"] for c in costs) == served["requests"]
    assert sum(c["prompt_tokens"] for c in costs) == served["prompt_tokens"]
    assert sum(c["completion_tokens"] for c in costs) == served["completion_tokens"]


def test_each_purpose_is_one_row_and_the_probes_and_rollouts_are_in_it(served_run):
    summary, _, _ = served_run
    purposes = [c["purpose"] for c in summary["costs"]]
    assert len(purposes) == len(set(purposes))
    paid = {c["purpose"] for c in summary["costs"] if c["calls"]}
    assert {"rollout", "mc_value", "judge_probe", "judge_vote"} <= paid


def test_a_tree_labeler_that_paid_nothing_is_named_on_the_row_that_paid_for_its_samples(served_run):
    summary, _, _ = served_run
    rows = {c["purpose"]: c for c in summary["costs"]}
    for labeler in ("omega_prm", "progress"):
        paid_itself = rows.get(labeler, {}).get("calls", 0) > 0
        assert paid_itself != (labeler in rows["mc_value"]["reused_by"])
    for c in summary["costs"]:
        if c["reused_by"]:
            assert f"{c['purpose']} (samples reused by {', '.join(c['reused_by'])})" in summary_markdown(summary)


def test_the_summary_says_stage_sum_and_wall_time(served_run):
    summary, _, _ = served_run
    assert 0 < summary["stage_seconds"] <= summary["wall_seconds"] + 0.5  # serial: the stages lie inside the wall
    assert (f"| seconds: sum over stages / wall time since the run started | {summary['stage_seconds']:.3f} / "
            f"{summary['wall_seconds']:.3f} |") in summary_markdown(summary)
