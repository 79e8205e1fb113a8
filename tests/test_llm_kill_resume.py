"""A process killed with SIGKILL mid-batch loses only its requests in flight; a rerun pays for the rest only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from prm_data.llm.cache import stored_request_keys
from prm_data.llm.factory import BackendConfig, make_client
from prm_data.llm.types import GenerationRequest, Message
from prm_data.serve_sim import ServeSimConfig, SimServer
from prm_data.sources.bank import generate_bank
from prm_data.warehouse import Warehouse

pytestmark = [pytest.mark.network, pytest.mark.slow]

COUNT, CONCURRENCY = 200, 4

WORKER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_llm_kill_resume import config, requests
    from prm_data.llm.factory import make_client
    from prm_data.warehouse import Warehouse
    client = make_client(config({url!r}), Warehouse({root!r}), run_id="killed")
    client.generate(requests())
    print("finished the whole batch", flush=True)
""")


def config(url: str) -> BackendConfig:
    return BackendConfig(kind="openai", model="sim-policy", base_urls=(url,), concurrency=CONCURRENCY)


def requests() -> list[GenerationRequest]:
    return [GenerationRequest(messages=(Message("user", p.question),), seed=s, purpose="rollout")
            for p in generate_bank(COUNT // 4, seed=31) for s in range(4)]


def journal_keys(root) -> set[str]:
    """The keys whose answers are committed to the request cache's store."""
    if not (root / "llm_cache.sqlite").exists():
        return set()
    return stored_request_keys(Warehouse(root))


def test_a_rerun_after_sigkill_is_served_from_the_cache_and_asks_only_for_the_rest(tmp_path):
    # capacity 4 / 0.05 s = 80 requests/s: the batch takes about 2.5 s, we kill it after ~60 answers
    with SimServer(ServeSimConfig(latency_s=0.05, max_concurrency=CONCURRENCY)) as server:
        code = WORKER.format(tests=os.path.dirname(__file__), url=server.url, root=str(tmp_path))
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while len(journal_keys(tmp_path)) < 60:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the worker never got going"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL and b"finished" not in out
        paid_before_kill = len(server.succeeded())
        journaled = journal_keys(tmp_path)
        assert 60 <= len(journaled) < COUNT

        rerun = make_client(config(server.url), Warehouse(tmp_path), run_id="rerun")
        results = rerun.generate(requests())
        assert all(r.ok for r in results)
        total = rerun.stats.total
        assert total.cache_hits == len(journaled)  # every answer the killed process journaled
        assert total.calls == total.cache_misses == COUNT - len(journaled)
        lost_in_flight = paid_before_kill - len(journaled)
        print(f"killed after {len(journaled)} journaled answers; rerun: {total.cache_hits} cache hits, "
              f"{total.calls} calls; lost in flight: {lost_in_flight}")
        assert 0 <= lost_in_flight <= CONCURRENCY  # answered, but the process died before journaling
        assert len(server.asked_after_success()) == lost_in_flight
        assert len(server.succeeded()) == COUNT

        rerun.cache.flush()  # exports the dead process's answers too
    wh = Warehouse(tmp_path)
    assert wh.scalar("SELECT count(DISTINCT request_key) FROM llm_cache") == COUNT == wh.scalar(
        "SELECT count(*) FROM llm_cache")
