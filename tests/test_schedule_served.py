"""`prm-data schedule` serves the nightly flow, and a triggered run of that deployment labels steps.

Specification (issue 13, item 1), as a user types it: with `prefect server start`
on a loopback port and PREFECT_API_URL set, `prm-data schedule -c CONFIG --name
sim-served` serves the deployment; `prefect deployment run nightly/sim-served`
triggers it once; the served process runs the flow to completion (its parameter
model, built from the flow's annotations, is fully defined in the serving
process) and the run writes step labels and final labels to the warehouse.

The warehouse is an `s3://` bucket on a local S3-compatible server (issue 20: every
command works with an object-store root): the serving process and the flow run it
starts reach the bucket through the environment, as a user's would, and the rows
are read back from the bucket. `run` on a local folder goes through the same flow
(tests/test_flows.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_deployment import _free_port, _start, _stop, _wait_healthy

from prm_data.warehouses import open_warehouse
from s3_support import SECRET, s3_endpoint, s3_root  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def small_sim_config(root: Path, warehouse: str) -> Path:
    """configs/sim.yaml on 4 problems x 2 rollouts, writing into `warehouse`, its other files in `root`."""
    data = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text())
    data.update(warehouse=warehouse, reports_dir=str(root / "reports"), shard_size=4)
    data["problems"] = {"source": "bank:4:2:0"}
    data["rollouts"] = {"n": 2}
    data["labeling"]["mc_value"] = {"k": 2}
    data["export"]["out_dir"] = str(root / "export")
    path = root / "served.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
@pytest.mark.network
def test_a_served_schedule_runs_a_triggered_night_to_completion_into_a_bucket(tmp_path, s3_root):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    config = small_sim_config(tmp_path, s3_root)
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env, server_log))
        _wait_healthy(api, procs[0], server_log)
        procs.append(_start([str(BIN / "prm-data"), "schedule", "-c", str(config), "--name", "sim-served"],
                            env, serve_log))
        deadline = time.monotonic() + 180
        while True:  # the deployment exists once `serve` has registered it
            listed = subprocess.run([str(BIN / "prefect"), "deployment", "ls"], env=env, capture_output=True,
                                    text=True, timeout=120)
            if "sim-served" in listed.stdout:
                break
            assert procs[1].poll() is None, f"prm-data schedule exited:\n{serve_log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"never served:\n{serve_log.read_text()[-3000:]}"
            time.sleep(1)

        triggered = subprocess.run([str(BIN / "prefect"), "deployment", "run", "nightly/sim-served", "--watch",
                                    "--watch-timeout", "480"], env=env, capture_output=True, text=True, timeout=540)
        report = triggered.stdout[-3000:] + triggered.stderr[-3000:] + serve_log.read_text()[-3000:]
        assert triggered.returncode == 0, report
        assert "Completed" in triggered.stdout, report
    finally:
        for proc in reversed(procs):
            _stop(proc)

    assert not (tmp_path / "s3:").exists()
    assert SECRET not in serve_log.read_text()
    wh = open_warehouse(s3_root)
    assert wh.scalar("SELECT count(*) FROM runs WHERE status = 'completed'") == 1
    labelers = {r["labeler"] for r in wh.rows("SELECT DISTINCT labeler FROM step_labels")}
    assert labelers == {"mc_value", "omega_prm", "progress", "tool_verify", "judge_vote", "rubric"}
    assert wh.scalar("SELECT count(*) FROM final_labels") > 0
