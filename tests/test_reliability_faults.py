"""The whole `prm-data run` against a model server that fails 20% of requests.

The sim server (prm_data/serve_sim.py) injects, in equal shares, 429s with
Retry-After, 500s, requests held past the client's timeout, 200s whose body is
not JSON, 200s with no choices and bodies cut off halfway. Faults are drawn from
a hash of (seed, request body, attempt), so the run is reproducible. With one
retry per request, about 4% of requests fail for good: the run must still
complete, record each of them as a `failures` row, and say how many it lost.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from prm_data.serve_sim import FAULT_KINDS, ServeSimConfig, SimServer
from prm_data.warehouse import Warehouse
from reliability_support import cli_command, http_config

pytestmark = [pytest.mark.network, pytest.mark.slow]

MAX_RETRIES = 1
RATE = 0.20 / len(FAULT_KINDS)
SERVER = ServeSimConfig(**{f"rate_{k}": RATE for k in FAULT_KINDS}, retry_after_s=0.2, timeout_sleep_s=2.5, seed=0)
RETRIES = {"max_retries": MAX_RETRIES, "timeout_s": 2.0, "backoff_base_s": 0.05, "backoff_max_s": 0.5}


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    """One run against the faulty server: (process result, server, warehouse)."""
    tmp = tmp_path_factory.mktemp("faults")
    with SimServer(SERVER) as server:
        config = http_config(tmp / "night.yaml", server.url, backend=RETRIES)
        proc = subprocess.run(cli_command("--warehouse", str(tmp / "wh"), "run", "-c", str(config), "--serial"),
                              cwd=tmp, capture_output=True, text=True, timeout=300)
    return proc, server, Warehouse(tmp / "wh")


def test_the_run_completes_although_a_fifth_of_the_requests_fail(faulty_run):
    proc, server, wh = faulty_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["status"] for r in wh.rows("SELECT status FROM runs")] == ["completed"]
    outcomes = server.outcomes()
    assert all(outcomes[k] >= 1 for k in FAULT_KINDS), outcomes
    faults = sum(outcomes[k] for k in FAULT_KINDS)
    assert 0.12 <= faults / server.requests_total <= 0.28, outcomes
    labelers = {r["labeler"] for r in wh.rows("SELECT DISTINCT labeler FROM step_labels")}
    assert labelers == {"mc_value", "tool_verify", "judge_vote"}
    assert wh.scalar("SELECT count(*) FROM final_labels WHERE kept") > 0


def test_retries_are_bounded_per_request(faulty_run):
    _, server, _ = faulty_run
    attempts = [len(outs) for outs in server.log.values()]
    assert max(attempts) == MAX_RETRIES + 1  # some requests were retried, none more than allowed
    assert sum(attempts) <= (MAX_RETRIES + 1) * len(attempts)


def test_every_request_that_failed_for_good_is_a_failures_row_and_nothing_else_is_lost(faulty_run):
    _, server, wh = faulty_run
    never_answered = [h for h, outs in server.log.items() if "ok" not in outs]
    assert never_answered, "no request failed for good: the test would prove nothing"
    rows = wh.rows("SELECT stage, item_id, input, reason FROM failures WHERE stage LIKE 'generate:%'")
    # one row per failed request; a request of n samples lists each failed sample's reason, '; '-separated
    reasons = [(r["stage"], r["input"], part) for r in rows for part in r["reason"].split("; ")]
    assert all(re.match(r"(gave up after \d+ attempts|non-retryable error|batch retry budget)", p)
               for _, _, p in reasons)
    assert all(r["item_id"] and r["input"] for r in rows)
    # Two items may ask the very same request (two identical rollouts get the same judge prompt):
    # one failed request, a row for each item that lost its answer.
    assert len(set(reasons)) <= len(never_answered) <= len(reasons)
    answered = {server.request_keys[h] for h in server.succeeded()}
    cached = {r["request_key"] for r in wh.rows("SELECT request_key FROM llm_cache")}
    assert answered <= cached  # every answer delivered was kept
    assert server.asked_after_success() == []


def test_the_summary_says_how_many_failures_and_where(faulty_run):
    proc, _, wh = faulty_run
    total = wh.scalar("SELECT count(*) FROM failures")
    assert total >= 1
    shown = re.search(r"^\s*failures\s+(\d+)\s*$", proc.stdout, re.M)
    assert shown and int(shown.group(1)) == total, proc.stdout[-2000:]
    assert wh.scalar("SELECT failures FROM runs") == total
    for stage in {r["stage"] for r in wh.rows("SELECT DISTINCT stage FROM failures")}:
        assert re.search(rf"^\s*{re.escape(stage)}\s+\d+\s*$", proc.stdout, re.M), stage
