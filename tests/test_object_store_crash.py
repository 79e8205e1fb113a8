"""A run on an s3:// warehouse killed with SIGKILL, then rerun, ends with the same tables as an
uninterrupted run on a local folder (issue 20; the local version: tests/test_reliability_crash.py).

The real `prm-data run` in a subprocess against the real OpenAI-compatible sim server, the
warehouse in a bucket of moto's S3 server on 127.0.0.1 (tests/s3_support.py). The killed run
leaves its run-claim lease behind: the rerun, on the same host with the holder's pid gone,
takes it over at once.
"""

from __future__ import annotations

import time

import pytest

from prm_data.serve_sim import ServeSimConfig, SimServer
from prm_data.warehouse import Warehouse
from prm_data.warehouses import open_warehouse
from reliability_support import (CONTENT_TABLES, cli_command, duplicate_keys, http_config, kill_tree, run_to_end,
                                 start, table_snapshot, wait_until)
from s3_support import s3_endpoint, s3_root  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.network, pytest.mark.slow]

SERVER = ServeSimConfig(latency_s=0.01)
SHARDS = 2  # bank:4 problems in shards of 2
SMALL = {"source": "bank:4:2:5", "labelers": ("mc_value", "tool_verify", "judge_vote"), "mc_k": 2}


def run_args(config, root) -> list[str]:
    return ["--warehouse", str(root), "run", "-c", str(config), "--serial"]


def test_a_run_on_s3_killed_in_generation_and_in_labeling_resumes_to_the_local_runs_tables(s3_root, tmp_path):
    base_dir, crash_dir = tmp_path / "base", tmp_path / "crash"
    base_dir.mkdir()
    crash_dir.mkdir()
    with SimServer(SERVER) as server:
        config = http_config(base_dir / "night.yaml", server.url, **SMALL)
        assert run_to_end(cli_command(*run_args(config, base_dir / "wh")), base_dir, base_dir / "run.log") == 0
    base = Warehouse(base_dir / "wh")

    log = crash_dir / "runs.log"
    wh = open_warehouse(s3_root)
    with SimServer(SERVER) as server:
        args = run_args(http_config(crash_dir / "night.yaml", server.url, **SMALL), s3_root)
        proc = start(cli_command(*args), crash_dir, log)  # 1. killed while generating rollouts
        wait_until(lambda: len(server.succeeded()) >= 6, proc, log, timeout=180, what="rollouts")
        kill_tree(proc)
        assert len(wh.run_files("rollouts", None)) < SHARDS

        proc = start(cli_command(*args), crash_dir, log)  # 2. killed while labeling
        wait_until(lambda: time.sleep(0.2) or len(wh.run_files("rollouts", None)) == SHARDS, proc, log,
                   timeout=180, what="generation to finish")
        target = len(server.succeeded()) + 20
        wait_until(lambda: len(server.succeeded()) >= target, proc, log, timeout=180, what="labeling calls")
        kill_tree(proc)
        assert wh.run_files("final_labels", None) == []

        assert run_to_end(cli_command(*args), crash_dir, log, timeout=300) == 0, log.read_text()[-3000:]

    assert [r["status"] for r in wh.rows("SELECT status FROM runs")] == ["completed"]  # one run, resumed
    assert wh.scalar("SELECT count(*) FROM failures") == 0
    for table in CONTENT_TABLES:
        assert duplicate_keys(wh, table) == [], table
        got, want = table_snapshot(wh, table), table_snapshot(base, table)
        assert len(got) == len(want) and got == want, f"{table} differs from the uninterrupted local run"
    assert wh.scalar("SELECT count(*) FROM step_labels") > 40
    paid = "SELECT paid_requests, paid_prompt_tokens, paid_completion_tokens FROM runs"
    assert wh.rows(paid) == base.rows(paid)
    assert wh.run_files("runs", None) and not wh.fs.find(f"{s3_root.split('://')[1]}/locks")  # claim released
