"""The one entry point labelers use to sample from models.

`LLMClient.generate(requests)` takes a batch of requests and returns one
`GenerationResult` per request, in order. Inside it is async with bounded
concurrency; each sample is keyed by content hash and served from the request
cache when it was already paid for. A request that still fails after retries
comes back with `error` set and is recorded in the failure log; it never
raises.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from prm_data.failures import FailureLog
from prm_data.llm.types import Backend, GenerationRequest, GenerationResult, Sample


@dataclass
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    failures: int = 0


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

    @property
    def total(self) -> Usage:
        t = Usage()
        for u in self.by_purpose.values():
            for k in vars(t):
                setattr(t, k, getattr(t, k) + getattr(u, k))
        return t


class LLMClient:
    def __init__(self, backend: Backend, cache=None, concurrency: int = 8,
                 failures: FailureLog | None = None):
        self.backend = backend
        self.cache = cache
        self.concurrency = concurrency
        self.failures = failures
        self.stats = UsageStats()

    @property
    def model(self) -> str:
        return self.backend.model

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Sample every request; order preserved; failures recorded, never raised."""
        if not requests:
            return []
        return _run(self._generate_all(list(requests)))

    async def _generate_all(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        sem = asyncio.Semaphore(self.concurrency)

        async def one(req: GenerationRequest, i: int):
            key = req.sample_key(self.backend.name, self.backend.model, i)
            if self.cache is not None:
                hit = self.cache.get(key)
                if hit is not None:
                    return hit
            async with sem:
                try:
                    sample = await self.backend.generate_one(req, i)
                except Exception as exc:  # recorded as a failure row, never silent
                    return exc
            if self.cache is not None:
                self.cache.put(key, sample, backend=self.backend.name, model=self.backend.model)
            return sample

        tasks = [[asyncio.ensure_future(one(r, i)) for i in range(r.n)] for r in requests]
        results = []
        for req, ts in zip(requests, tasks):
            outs = await asyncio.gather(*ts)
            samples, errors = [], []
            for o in outs:
                if isinstance(o, Exception):
                    errors.append(f"{type(o).__name__}: {o}")
                    self.stats.add(req.purpose, None, failed=True)
                else:
                    samples.append(o)
                    self.stats.add(req.purpose, o)
            error = "; ".join(errors) if errors else None
            if error and self.failures is not None:
                self.failures.record(f"generate:{req.purpose}", error, item_id=req.item_id,
                                     input=req.messages[-1].content)
            results.append(GenerationResult(request=req, samples=tuple(samples), error=error))
        return results


def _run(coro):
    """Run a coroutine from sync code, also when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    out: dict = {}

    def target():
        out["v"] = asyncio.run(coro)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    return out["v"]
