"""The client's contract: order kept, retries bounded, failures recorded, batch backends batched.

The backends here are small, real implementations of the backend protocol
around the synthetic policy, each misbehaving in one stated way.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from prm_data.failures import FailureLog
from prm_data.llm.client import BatchBackend, LLMClient
from prm_data.llm.retry import RetryPolicy
from prm_data.llm.sim import SimBackend
from prm_data.llm.types import BackendError, GenerationRequest, Message, Sample
from prm_data.sources.bank import generate_bank

FAST = RetryPolicy(base_delay_s=0.001, max_delay_s=0.01, timeout_s=5)


def requests(count: int, n: int = 1) -> list[GenerationRequest]:
    return [GenerationRequest(messages=(Message("user", p.question),), n=n, purpose="rollout", item_id=p.problem_id)
            for p in generate_bank(count, seed=17)]


class FlakyBatchSim:
    """A batch backend: the first `bad_attempts` tries of every third item fail (retryable); `poison` never works."""

    name, model, max_batch_size = "flaky", "sim-policy", 4

    def __init__(self, bad_attempts: int = 1, poison: str | None = None):
        self.sim = SimBackend()
        self.bad_attempts = bad_attempts
        self.poison = poison
        self.tries: Counter = Counter()
        self.batches: list[int] = []

    async def generate_one(self, request, sample_index):
        return self.generate_batch([(request, sample_index)])[0]

    def generate_batch(self, items):
        self.batches.append(len(items))
        out = []
        for req, i in items:
            key = req.sample_key(self.name, self.model, i)
            self.tries[key] += 1
            if req.item_id == self.poison:
                out.append(BackendError("prompt too long for the engine", retryable=False))
            elif int(key, 16) % 3 == 0 and self.tries[key] <= self.bad_attempts:
                out.append(BackendError("engine busy", retry_after=0.001))
            else:
                text, meta = self.sim.complete(req, key)
                out.append(Sample(text, "stop", 10, 20, 0.0, key, metadata=meta))
        return out


class SlowFirstSim:
    """A one-at-a-time backend whose first attempt at each sample hangs past the client's timeout."""

    name, model = "slow", "sim-policy"

    def __init__(self):
        self.sim = SimBackend()
        self.seen: Counter = Counter()

    async def generate_one(self, request, sample_index):
        key = request.sample_key(self.name, self.model, sample_index)
        self.seen[key] += 1
        if self.seen[key] == 1:
            await asyncio.sleep(30)
        text, meta = self.sim.complete(request, key)
        return Sample(text, "stop", 1, 1, 0.0, key, metadata=meta)


class BuggySim:
    name, model = "buggy", "sim-policy"

    async def generate_one(self, request, sample_index):
        raise ValueError("a bug in the backend")


def test_a_batch_backend_gets_batches_and_its_failed_items_are_retried_in_later_batches():
    backend = FlakyBatchSim(bad_attempts=1)
    assert isinstance(backend, BatchBackend)
    reqs = requests(10, n=2)
    with LLMClient(backend, retry=FAST) as client:
        results = client.generate(reqs)
    assert all(r.ok and len(r.samples) == 2 for r in results)
    assert max(backend.batches) == 4 and sum(backend.batches[:5]) == 20  # 20 samples in batches of <= 4
    retried = [k for k, t in backend.tries.items() if t == 2]
    assert retried and client.stats.total.retries == len(retried) and client.stats.total.calls == 20
    assert [r.request.item_id for r in results] == [r.item_id for r in reqs]


def test_an_item_that_keeps_failing_in_a_batch_backend_is_recorded_with_its_reason():
    reqs = requests(6)
    backend = FlakyBatchSim(bad_attempts=99, poison=reqs[0].item_id)
    failures = FailureLog("t")
    with LLMClient(backend, failures=failures, retry=FAST.model_copy(update={"max_retries": 2})) as client:
        results = client.generate(reqs)
    assert "non-retryable error after 1 attempt: prompt too long" in results[0].error
    for r in results[1:]:
        assert r.ok or "gave up after 3 attempts (max_retries=2): engine busy" in r.error
    assert {row["item_id"] for row in failures.rows} == {r.request.item_id for r in results if not r.ok}
    assert client.stats.total.failures == len(failures.rows) >= 2


def test_an_attempt_past_the_timeout_is_abandoned_and_retried():
    backend = SlowFirstSim()
    policy = RetryPolicy(timeout_s=0.2, base_delay_s=0.0, max_delay_s=0.0)
    with LLMClient(backend, retry=policy) as client:
        results = client.generate(requests(3))
    assert all(r.ok for r in results) and set(backend.seen.values()) == {2}
    assert client.stats.total.retries == 3


def test_a_backend_bug_becomes_a_failure_row_not_an_exception():
    failures = FailureLog("t")
    with LLMClient(BuggySim(), failures=failures, retry=FAST) as client:
        results = client.generate(requests(2))
    assert [r.ok for r in results] == [False, False] and client.stats.total.retries == 0
    assert all("ValueError: a bug in the backend" in row["reason"] for row in failures.rows)


def test_generate_works_from_inside_a_running_event_loop():
    async def labeler():
        with LLMClient(SimBackend()) as client:
            return client.generate(requests(2))

    results = asyncio.run(labeler())
    assert all(r.ok and r.texts[0].startswith("Step 1:") for r in results)
