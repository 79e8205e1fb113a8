"""The one entry point labelers use to sample from models.

`LLMClient.generate(requests)` takes a batch of requests and returns one
`GenerationResult` per request, in order. Inside it is async with bounded
concurrency; each sample is keyed by content hash and served from the request
cache when it was already paid for; the same key asked twice in one batch is
generated once. Retryable errors (`BackendError(retryable=True)`: 429, 5xx,
timeouts, garbage) are retried with capped exponential backoff and jitter,
honouring Retry-After (prm_data/llm/retry.py). A request that still fails
comes back with `error` set and is recorded in the failure log; `generate`
never raises and never returns a silent None.

Backends with a native batch path (`generate_batch`: vLLM offline, the local
transformers model) get the cache misses in batches of `max_batch_size`
instead of one call per sample.

The client owns one event loop in a background thread, so `generate` works
from plain code and from inside a running event loop alike, and async
backends (AsyncOpenAI connection pools) live on one loop for the client's
lifetime.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from prm_data import progress
from prm_data.failures import FailureLog
from prm_data.llm.retry import RetryBudget, RetryPolicy
from prm_data.llm.types import Backend, BackendError, GenerationRequest, GenerationResult, Sample


@runtime_checkable
class BatchBackend(Protocol):
    """A backend that samples many (request, sample_index) pairs in one engine call.

    Returns one entry per item, in order: a `Sample`, or the `BackendError`
    that item hit (a whole-batch exception fails every item of the batch).
    """

    name: str
    model: str
    max_batch_size: int

    def generate_batch(self, items: Sequence[tuple[GenerationRequest, int]]) -> list[Sample | BackendError]: ...


@dataclass
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    failures: int = 0
    retries: int = 0

    def to_run_columns(self) -> dict:
        """The token/call/cache columns of a `runs` row."""
        return {k: getattr(self, k) for k in
                ("prompt_tokens", "completion_tokens", "calls", "cache_hits", "cache_misses", "failures")}


@dataclass
class UsageStats:
    """Token, call and cache accounting, per purpose (labeler) and in total."""

    by_purpose: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, purpose: str, sample: Sample | None, failed: bool = False) -> None:
        with self._lock:
            u = self.by_purpose[purpose]
            if failed:
                u.failures += 1
                return
            if sample.cached:
                u.cache_hits += 1
            else:
                u.cache_misses += 1
                u.calls += 1
                u.prompt_tokens += sample.prompt_tokens
                u.completion_tokens += sample.completion_tokens

    def add_retry(self, purpose: str) -> None:
        with self._lock:
            self.by_purpose[purpose].retries += 1

    @property
    def total(self) -> Usage:
        t = Usage()
        with self._lock:
            for u in self.by_purpose.values():
                for k in vars(t):
                    setattr(t, k, getattr(t, k) + getattr(u, k))
        return t


@dataclass
class _Failed:
    reason: str


@dataclass
class _Item:
    request: GenerationRequest
    index: int
    key: str
    attempts: int = 0
    last_error: BackendError | None = None


class LLMClient:
    def __init__(self, backend: Backend, cache=None, concurrency: int = 8,
                 failures: FailureLog | None = None, retry: RetryPolicy | None = None):
        self.backend = backend
        self.cache = cache
        self.concurrency = concurrency
        self.failures = failures
        self.retry = retry or RetryPolicy()
        self.stats = UsageStats()
        self._loop: _LoopThread | None = None
        self._sem: asyncio.Semaphore | None = None
        self._rng = random.Random()
        self._loop_lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.backend.model

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Sample every request; order preserved; failures recorded, never raised."""
        if not requests:
            return []
        with self._loop_lock:
            if self._loop is None:
                self._loop = _LoopThread()
        return self._loop.run(self._generate_all(list(requests)))

    def close(self) -> None:
        """Stop the client's event loop and close the backend's connections."""
        with self._loop_lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        aclose = getattr(self.backend, "aclose", None)
        if aclose is not None:
            loop.run(aclose())
        loop.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ core
    async def _generate_all(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.concurrency)
        name, model = self.backend.name, self.backend.model
        slots = [[(r, i, r.sample_key(name, model, i)) for i in range(r.n)] for r in requests]
        outcome: dict[str, Sample | _Failed] = {}
        todo: list[_Item] = []
        for per_request in slots:
            for req, i, key in per_request:
                if key in outcome:
                    continue
                hit = self.cache.get(key) if self.cache is not None else None
                if hit is not None:
                    outcome[key] = hit
                else:
                    outcome[key] = None  # placeholder: to be generated
                    todo.append(_Item(req, i, key))
        budget = self.retry.batch_budget(len(todo))
        for purpose, count in Counter(t.request.purpose for t in todo).items():
            progress.advance(purpose, 0, total=count)
        if todo:
            if isinstance(self.backend, BatchBackend):
                await self._run_batched(todo, budget, outcome)
            else:
                done = await asyncio.gather(*(self._sample_with_retries(t, budget) for t in todo))
                for t, o in zip(todo, done):
                    outcome[t.key] = o

        results = []
        served: set[str] = set()  # keys already handed out in this batch
        for req, per_request in zip(requests, slots):
            samples, errors = [], []
            for _, _, key in per_request:
                o = outcome[key]
                if o is None:  # cannot happen unless a backend path forgot an item: say so, never hide it
                    o = _Failed("internal error: no outcome was recorded for this sample")
                if isinstance(o, _Failed):
                    errors.append(o.reason)
                    self.stats.add(req.purpose, None, failed=True)
                    continue
                if key in served:  # the same key twice in one batch: generated once
                    o = dataclasses.replace(o, cached=True)
                served.add(key)
                samples.append(o)
                self.stats.add(req.purpose, o)
            error = "; ".join(errors) if errors else None
            if error and self.failures is not None:
                self.failures.record(f"generate:{req.purpose}", error,
                                     item_id=req.item_id or per_request[0][2],
                                     input=req.messages[-1].content if req.messages else None)
            results.append(GenerationResult(request=req, samples=tuple(samples), error=error))
        return results

    async def _stored(self, item: _Item, sample: Sample) -> Sample:
        if self.cache is not None:  # an fsync per answer: off the event loop
            await asyncio.to_thread(self.cache.put, item.key, sample, self.backend.name, self.backend.model)
        progress.advance(item.request.purpose)
        return sample

    def _give_up(self, item: _Item, err: BackendError, budget: RetryBudget) -> _Failed | None:
        """A failure record if `item` must not be retried after `err`, else None (and a retry is taken)."""
        tries = f"{item.attempts} attempt{'s' if item.attempts != 1 else ''}"
        if not err.retryable:
            reason = f"non-retryable error after {tries}: {err}"
        elif item.attempts > self.retry.max_retries:
            reason = f"gave up after {tries} (max_retries={self.retry.max_retries}): {err}"
        elif not budget.take():
            reason = f"batch retry budget of {budget.cap} exhausted after {tries}: {err}"
        else:
            self.stats.add_retry(item.request.purpose)
            return None
        progress.advance(item.request.purpose)
        return _Failed(reason)

    async def _sample_with_retries(self, item: _Item, budget: RetryBudget) -> Sample | _Failed:
        timeout = self.retry.timeout_s
        while True:
            item.attempts += 1
            sample = None
            async with self._sem:
                try:
                    sample = await asyncio.wait_for(self.backend.generate_one(item.request, item.index), timeout)
                except TimeoutError:
                    err = BackendError(f"timed out after {timeout}s", retryable=True)
                except BackendError as exc:
                    err = exc
                except Exception as exc:  # a bug or an unknown condition: recorded, not retried
                    err = BackendError(f"{type(exc).__name__}: {exc}", retryable=False)
                else:
                    if not isinstance(sample, Sample):
                        err = BackendError(f"backend returned {type(sample).__name__}, not a Sample", retryable=False)
                        sample = None
                if sample is not None:
                    # The slot is held until the answer is journaled: answers waiting for their fsync
                    # count as in flight, so a kill loses at most `concurrency` paid answers.
                    return await self._stored(item, sample)
            failed = self._give_up(item, err, budget)
            if failed is not None:
                return failed
            await asyncio.sleep(self.retry.delay(item.attempts - 1, err.retry_after, self._rng))

    async def _run_batched(self, todo: list[_Item], budget: RetryBudget, outcome: dict) -> None:
        size = max(1, int(getattr(self.backend, "max_batch_size", 16)))
        pending = todo
        while pending:
            retry_next: list[_Item] = []
            wait = 0.0
            for start in range(0, len(pending), size):
                chunk = pending[start:start + size]
                for t in chunk:
                    t.attempts += 1
                pairs = [(t.request, t.index) for t in chunk]
                try:
                    outs = await asyncio.to_thread(self.backend.generate_batch, pairs)
                    if len(outs) != len(chunk):
                        raise BackendError(f"generate_batch returned {len(outs)} results for {len(chunk)} items")
                except BackendError as exc:
                    outs = [exc] * len(chunk)
                except Exception as exc:  # recorded for every item of the batch
                    outs = [BackendError(f"{type(exc).__name__}: {exc}", retryable=False)] * len(chunk)
                for t, o in zip(chunk, outs):
                    if isinstance(o, Sample):
                        outcome[t.key] = await self._stored(t, o)
                        continue
                    err = o if isinstance(o, BackendError) else BackendError(repr(o), retryable=False)
                    failed = self._give_up(t, err, budget)
                    if failed is not None:
                        outcome[t.key] = failed
                    else:
                        retry_next.append(t)
                        wait = max(wait, self.retry.delay(t.attempts - 1, err.retry_after, self._rng))
            if retry_next:
                await asyncio.sleep(wait)
            pending = retry_next


class _LoopThread:
    """An event loop running forever in a daemon thread; coroutines are submitted to it."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llm-client-loop", daemon=True)
        self.thread.start()

    def run(self, coro):
        if threading.current_thread() is self.thread:
            raise RuntimeError("LLMClient.generate called from inside its own event loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()
