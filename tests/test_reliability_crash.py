"""Crash and resume, end to end: `prm-data run` killed with SIGKILL at seeded random points
(during generation, during labeling, in the middle of shard writes) and rerun ends with
exactly the tables of a run that was never interrupted.

The policy and the judge are the synthetic ones served over HTTP by the sim server
(prm_data/serve_sim.py), reached through the `openai` backend, so every model call
is a real request the server counts per request body. A reader process polls the
warehouse during every run and must never see a partial Parquet file.

What a kill can cost, and what this test allows: an answer the server delivered
to a process that died before journaling it (prm_data/llm/cache.py) was never
stored, so the rerun asks for it again. Those are the requests in flight at the
kill; a request whose answer had reached the disk is never asked again.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from prm_data.serve_sim import ServeSimConfig, SimServer
from prm_data.warehouse import Warehouse
from reliability_support import (CONTENT_TABLES, WarehouseReader, cli_command, duplicate_keys, http_config,
                                 kill_tree, run_to_end, start, stored_request_keys, table_snapshot, wait_until)

pytestmark = [pytest.mark.network, pytest.mark.slow]

SEED = 8
CONCURRENCY = 8  # BackendConfig.concurrency default: requests one client has in flight
SHARDS = 3  # bank:6 problems in shards of 2
SERVER = ServeSimConfig(latency_s=0.01)


def run_args(config: Path, root: Path, serial: bool = True) -> list[str]:
    return ["--warehouse", str(root), "run", "-c", str(config), *(["--serial"] if serial else [])]


def rollout_shards(root: Path) -> int:
    return len(list((root / "tables" / "rollouts").glob("run_id=*/*.parquet")))


def parquet_rows(path: Path) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in pq.read_table(path).to_pylist())


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The uninterrupted run: (its folder, its warehouse, the requests its server answered)."""
    base_dir = tmp_path_factory.mktemp("base")
    with SimServer(SERVER) as base_server:
        base_cfg = http_config(base_dir / "night.yaml", base_server.url)
        assert run_to_end(cli_command(*run_args(base_cfg, base_dir / "wh")), base_dir, base_dir / "run.log") == 0
    return base_dir, Warehouse(base_dir / "wh"), len(base_server.succeeded())


def assert_same_as_baseline(wh: Warehouse, base: Warehouse, crash_dir: Path, base_dir: Path) -> None:
    runs = wh.rows("SELECT run_id, status FROM runs")
    assert [r["status"] for r in runs] == ["completed"]  # one run, resumed, completed
    assert wh.scalar("SELECT count(*) FROM failures") == 0 == base.scalar("SELECT count(*) FROM failures")
    for table in CONTENT_TABLES:
        assert duplicate_keys(wh, table) == [], table
        got, want = table_snapshot(wh, table), table_snapshot(base, table)
        assert len(got) == len(want) and got == want, f"{table} differs from the uninterrupted run"
    assert wh.scalar("SELECT count(*) FROM step_labels") > 100
    # what the run paid, over all its processes, is what the uninterrupted run paid: every stored answer once
    paid = "SELECT paid_requests, paid_prompt_tokens, paid_completion_tokens FROM runs"
    assert wh.rows(paid) == base.rows(paid)
    assert wh.rows(paid)[0]["paid_requests"] == wh.scalar("SELECT count(DISTINCT request_key) FROM llm_cache") > 0
    exported = sorted(p.relative_to(base_dir) for p in (base_dir / "exports").rglob("*.parquet"))
    assert len(exported) >= 3  # stepwise, pairs, processbench
    for rel in exported:
        assert parquet_rows(crash_dir / rel) == parquet_rows(base_dir / rel), f"export {rel} differs"


def test_sigkill_at_random_points_then_rerun_equals_an_uninterrupted_run(tmp_path, baseline):
    rng = random.Random(SEED)
    base_dir, base, base_answered = baseline
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    root = crash_dir / "wh"
    log = crash_dir / "runs.log"

    with SimServer(SERVER) as server:
        cfg = http_config(crash_dir / "night.yaml", server.url)
        args = run_args(cfg, root)
        Warehouse(root)  # the layout exists before the reader starts
        kills: list[dict] = []

        def killed(proc, where: str) -> None:
            kill_tree(proc)
            answered = {server.request_keys[h] for h in server.succeeded()}
            earlier = set().union(*(k["lost_in_flight"] for k in kills))
            kills.append({"where": where, "lost_in_flight": answered - stored_request_keys(root) - earlier})

        with WarehouseReader(root) as reader:
            # 1. during generation: after a random number of rollouts were answered
            proc = start(cli_command(*args), crash_dir, log)
            answered = rng.randint(4, 18)  # of 24 rollout requests, which come first
            wait_until(lambda: len(server.succeeded()) >= answered, proc, log, what="rollouts")
            assert rollout_shards(root) < SHARDS
            killed(proc, "generation")

            # 2. during labeling: generation finished, a random number of labeling calls answered
            proc = start(cli_command(*args), crash_dir, log)
            wait_until(lambda: rollout_shards(root) == SHARDS, proc, log, what="generation to finish")
            target = len(server.succeeded()) + rng.randint(10, 90)
            wait_until(lambda: len(server.succeeded()) >= target, proc, log, what="labeling calls")
            assert not list((root / "tables" / "final_labels").glob("run_id=*/*.parquet"))
            killed(proc, "labeling")

            # 3. twice, in the middle of a shard write (half the bytes on disk)
            partial_files = []
            for attempt in range(2):
                marker = crash_dir / f"paused-{attempt}"
                proc = start(cli_command(*args, write_pause=(rng.randint(2, 9), marker)), crash_dir, log)
                wait_until(marker.exists, proc, log, what="the paused shard write")
                killed(proc, "shard write")
                partial_files.append(Path(marker.read_text()))

            # 4. the rerun that finishes
            assert run_to_end(cli_command(*args), crash_dir, log) == 0, log.read_text()[-3000:]

        wh = Warehouse(root)
        # the paused writes really left half-written files behind, which no reader ever saw
        for path in partial_files:
            assert path.exists() and path.name.startswith(".") and path.suffix == ".tmp"
            with pytest.raises(Exception):
                pq.read_table(path)
        assert reader.report["errors"] == []
        assert reader.report["rounds"] >= 10 and reader.report["files_read"] > 0
        assert len(set(reader.report["totals"])) >= 5, "the reader did not see the warehouse change"
        assert_same_as_baseline(wh, base, crash_dir, base_dir)

        # no request whose answer was stored was ever asked again; only those in flight at a kill
        lost = set().union(*(k["lost_in_flight"] for k in kills))
        asked_again = {server.request_keys[h] for h in server.asked_after_success()}
        print(f"kills: {[(k['where'], len(k['lost_in_flight'])) for k in kills]}; asked again: {len(asked_again)}; "
              f"requests: {server.requests_total} vs uninterrupted {base_answered}")
        assert asked_again <= lost
        for k in kills:
            bound = 0 if k["where"] == "shard write" else CONCURRENCY
            assert len(k["lost_in_flight"]) <= bound, k
        assert len(server.succeeded()) == base_answered


def group_is_gone(pgid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_the_prefect_flow_killed_mid_labeling_resumes_to_the_same_tables(tmp_path, baseline):
    """The same, once, through the Prefect path (`prm-data run` without --serial): the kill
    takes the flow's whole process tree, its ephemeral Prefect server included."""
    base_dir, base, base_answered = baseline
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    root, log = crash_dir / "wh", crash_dir / "runs.log"
    env = {"PREFECT_HOME": str(tmp_path / "prefect")}  # a fresh Prefect database, shared by no other test
    with SimServer(SERVER) as server:
        args = run_args(http_config(crash_dir / "night.yaml", server.url), root, serial=False)
        proc = start(cli_command(*args), crash_dir, log, env)
        wait_until(lambda: rollout_shards(root) == SHARDS, proc, log, what="generation to finish")
        target = len(server.succeeded()) + random.Random(SEED).randint(10, 60)
        wait_until(lambda: len(server.succeeded()) >= target, proc, log, what="labeling calls")
        kill_tree(proc)
        assert group_is_gone(proc.pid), "a process of the killed run survived"
        lost = {server.request_keys[h] for h in server.succeeded()} - stored_request_keys(root)
        assert run_to_end(cli_command(*args), crash_dir, log, env=env) == 0, log.read_text()[-3000:]
        assert_same_as_baseline(Warehouse(root), base, crash_dir, base_dir)
        # the counters of the process that finished are its own: the generation it found cached (the killed
        # process finished it, and a task's state is read once final) is not counted again
        [summary] = Warehouse(root).rows("SELECT summary FROM runs")
        usage = json.loads(summary["summary"])["usage"]
        assert "rollout" not in usage and sum(u["cache_misses"] for u in usage.values()) == Warehouse(root).scalar(
            "SELECT cache_misses FROM runs") > 0
        assert {server.request_keys[h] for h in server.asked_after_success()} <= lost
        assert len(lost) <= CONCURRENCY * 2  # policy and judge clients each have CONCURRENCY in flight
        assert len(server.succeeded()) == base_answered
        assert_every_answer_kept_and_a_relabel_pays_nothing(server, crash_dir, root, env)


def assert_every_answer_kept_and_a_relabel_pays_nothing(server, folder: Path, root: Path, env: dict) -> None:
    """Every request the server answered is in `llm_cache`; a relabel through the Prefect flow
    (the same problems and models under another fusion policy: a new labeling version, so
    every problem is labeled again) is served from the cache and asks the server nothing."""
    wh = Warehouse(root)
    answered = {server.request_keys[h] for h in server.succeeded()}
    in_table = {r["request_key"] for r in wh.rows("SELECT DISTINCT request_key FROM llm_cache")}
    assert answered - in_table == set(), f"{len(answered - in_table)} answered requests not in llm_cache"
    asked = server.requests_total
    cfg = http_config(folder / "relabel.yaml", server.url, name="relabel", aggregate={"policy": "hybrid"})
    log = folder / "relabel.log"
    assert run_to_end(cli_command(*run_args(cfg, root, serial=False)), folder, log, env=env) == 0, \
        log.read_text()[-3000:]
    [relabel] = wh.rows("SELECT paid_requests, cache_misses FROM runs WHERE run_id LIKE 'relabel%'")
    assert server.requests_total == asked and relabel == {"paid_requests": 0, "cache_misses": 0}
    assert wh.scalar("SELECT count(*) FROM final_labels WHERE run_id LIKE 'relabel%'") > 0


def test_an_uninterrupted_prefect_run_stores_every_answer_it_was_sent(tmp_path):
    """No kill at all, through the Prefect flow (threads put and flush the shared cache at once):
    `llm_cache` and `runs.paid_requests` hold exactly the requests the server answered."""
    root, log = tmp_path / "wh", tmp_path / "run.log"
    env = {"PREFECT_HOME": str(tmp_path / "prefect")}
    with SimServer(SERVER) as server:
        cfg = http_config(tmp_path / "night.yaml", server.url, source="bank:12:2:5")
        assert run_to_end(cli_command(*run_args(cfg, root, serial=False)), tmp_path, log, env=env) == 0, \
            log.read_text()[-3000:]
        wh = Warehouse(root)
        answered = len(server.succeeded())
        assert server.asked_after_success() == []
        assert wh.scalar("SELECT count(*) FROM llm_cache") == answered == wh.scalar(
            "SELECT count(DISTINCT request_key) FROM llm_cache") > 100
        assert wh.scalar("SELECT paid_requests FROM runs") == answered
        # the relabel served from the cache is checked once, after the killed run above (the harder case)
