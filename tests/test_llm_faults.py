"""The openai backend over real HTTP against a faulty server: every batch completes, nothing is lost.

The test server (prm_data/serve_sim.py) draws its faults from a hash of
(seed, request body, attempt), so each run below is reproducible. It logs
every request by body hash; the client sends its sample key in
`X-Request-Key`, which links the two.
"""

from __future__ import annotations

import time

import pytest

from prm_data.failures import FailureLog
from prm_data.llm.client import LLMClient
from prm_data.llm.openai_backend import OpenAIBackend
from prm_data.llm.retry import RetryPolicy
from prm_data.llm.types import GenerationRequest, Message
from prm_data.serve_sim import FAULT_KINDS, ServeSimConfig, SimServer
from prm_data.sources.bank import generate_bank

pytestmark = pytest.mark.network

# Timeouts: long enough that no answered request is given up on, even on a 2-core machine running
# two test workers (an answer the client stopped waiting for would be asked again: 2 s was too short
# there); the faulty ones hold longer than the client waits.
TIMEOUT_S, HOLD_S = 6.0, 7.0
FAST_RETRIES = dict(base_delay_s=0.01, max_delay_s=0.1, timeout_s=TIMEOUT_S)


def batch(count: int, seed: int = 11) -> list[GenerationRequest]:
    problems = generate_bank(count // 5, seed=seed)
    return [GenerationRequest(messages=(Message("user", p.question),), seed=s, max_tokens=256,
                              purpose="rollout", item_id=f"{p.problem_id}/seed{s}")
            for p in problems for s in range(5)]


def run_batch(server: SimServer, requests, max_retries: int, continuation: str = "completions"):
    backend = OpenAIBackend("sim-policy", [server.url], continuation=continuation, timeout_s=TIMEOUT_S)
    failures = FailureLog("faults")
    with LLMClient(backend, concurrency=48, failures=failures,
                   retry=RetryPolicy(max_retries=max_retries, **FAST_RETRIES)) as client:
        results = client.generate(requests)
    return results, failures, client


def check_nothing_lost(server: SimServer, requests, results, failures) -> None:
    assert len(results) == len(requests)
    key_of = {r.item_id: r.sample_key("openai", "sim-policy", 0) for r in requests}
    answered = {server.request_keys[h] for h in server.succeeded()}
    for req, res in zip(requests, results):
        if res.ok:
            assert len(res.samples) == 1 and "Step 1:" in res.texts[0]
            assert "true_first_error" in res.samples[0].metadata  # the sim's truth came over HTTP
            assert key_of[req.item_id] in answered
        else:
            assert res.samples == () and key_of[req.item_id] not in answered
    failed_items = {r.request.item_id for r in results if not r.ok}
    assert {row["item_id"] for row in failures.rows} == failed_items
    assert all(row["stage"] == "generate:rollout" and row["reason"] for row in failures.rows)
    assert server.asked_after_success() == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_500_request_batch_completes_with_20_percent_of_one_fault_kind(kind):
    cfg = ServeSimConfig(**{f"rate_{kind}": 0.2}, seed=3, retry_after_s=0.05, timeout_sleep_s=HOLD_S)
    requests = batch(500)
    with SimServer(cfg) as server:
        results, failures, client = run_batch(server, requests, max_retries=4)
        outcomes = server.outcomes()
    assert 60 <= outcomes[kind] <= 160  # about 20% of ~625 attempts were faulted
    check_nothing_lost(server, requests, results, failures)
    assert sum(r.ok for r in results) >= 495  # five attempts each: a failure needs 0.2**5 bad luck
    assert client.stats.total.retries == outcomes[kind]


@pytest.mark.slow
def test_mixed_faults_with_few_retries_leave_recorded_failures_and_nothing_else_missing():
    rates = {f"rate_{k}": 0.2 / len(FAULT_KINDS) for k in FAULT_KINDS}
    cfg = ServeSimConfig(**rates, seed=5, retry_after_s=0.05, timeout_sleep_s=HOLD_S)
    requests = batch(500, seed=12)
    with SimServer(cfg) as server:
        results, failures, _ = run_batch(server, requests, max_retries=1, continuation="continue_final_message")
        outcomes = server.outcomes()
    assert set(outcomes) == {"ok", *FAULT_KINDS}
    check_nothing_lost(server, requests, results, failures)
    failed = [r for r in results if not r.ok]
    assert 5 <= len(failed) <= 45  # about 0.2**2 of 500
    reasons = " ".join(row["reason"] for row in failures.rows)
    assert "gave up after 2 attempts" in reasons


def test_a_non_retryable_error_is_recorded_at_once_without_a_retry(monkeypatch):
    monkeypatch.setenv("SIM_TEST_KEY", "wrong-key")
    with SimServer(ServeSimConfig(api_key="right-key")) as server:
        backend = OpenAIBackend("sim-policy", [server.url], api_key_env="SIM_TEST_KEY")
        failures = FailureLog("auth")
        with LLMClient(backend, failures=failures, retry=RetryPolicy(**FAST_RETRIES)) as client:
            [result] = client.generate(batch(5)[:1])
        assert server.requests_total == 0  # refused before it reached the sim
    assert not result.ok and "HTTP 401" in result.error and "non-retryable" in result.error
    assert "wrong-key" not in result.error and "wrong-key" not in repr(backend)
    assert [row["item_id"] for row in failures.rows] == [result.request.item_id]


def test_retry_after_is_honoured():
    cfg = ServeSimConfig(rate_429=0.999, seed=1, retry_after_s=0.4)
    with SimServer(cfg) as server:
        backend = OpenAIBackend("sim-policy", [server.url])
        t0 = time.perf_counter()
        with LLMClient(backend, retry=RetryPolicy(max_retries=2, base_delay_s=0.0, max_delay_s=0.0)) as client:
            [result] = client.generate(batch(5)[:1])
        elapsed = time.perf_counter() - t0
    assert not result.ok and "HTTP 429" in result.error
    assert elapsed >= 0.8  # two waits of at least Retry-After, though our own backoff asked for none


def test_the_batch_retry_budget_caps_the_cost_of_a_broken_server():
    with SimServer(ServeSimConfig(rate_500=1.0)) as server:
        backend = OpenAIBackend("sim-policy", [server.url])
        policy = RetryPolicy(max_retries=10, max_batch_retries=7, **FAST_RETRIES)
        with LLMClient(backend, concurrency=4, retry=policy) as client:
            results = client.generate(batch(20))
        assert server.requests_total == 20 + 7
    assert not any(r.ok for r in results)
    assert sum("batch retry budget of 7 exhausted" in r.error for r in results) >= 13
