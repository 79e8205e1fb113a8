"""Retry policy for model calls: capped exponential backoff with jitter, Retry-After honoured.

The delay before retry `k` (0-based) is drawn uniformly from
`[(1 - jitter) * d, d]` with `d = min(max_delay_s, base_delay_s * 2**k)`
("exponential backoff and jitter", AWS Architecture Blog, 2015); when the
server said `Retry-After: s`, the client waits at least `s` (capped at
`max_retry_after_s`). Two caps bound the cost of a bad server: at most
`max_retries` retries per sample, and at most `max_batch_retries` retries over
one `LLMClient.generate` batch, after which every further error is recorded as
a failure at once.
"""

from __future__ import annotations

import random
import threading

from pydantic import BaseModel, ConfigDict, Field


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_retries: int = Field(4, ge=0, description="Retries per sample after the first attempt (5 attempts in all by default).")
    max_batch_retries: int | None = Field(
        None, ge=0,
        description="Retries allowed over one generate() batch; None = max(100, 2 x samples in the batch).")
    timeout_s: float | None = Field(
        120.0, gt=0, description="Per-attempt timeout in seconds (a timed-out attempt is retried); None = no limit.")
    base_delay_s: float = Field(0.5, ge=0, description="Backoff before the first retry, doubled on each retry.")
    max_delay_s: float = Field(30.0, ge=0, description="Upper bound of the exponential backoff.")
    jitter: float = Field(0.5, ge=0, le=1, description="Fraction of the delay drawn at random (1 = full jitter).")
    max_retry_after_s: float = Field(60.0, ge=0, description="Longest server Retry-After honoured.")

    def delay(self, retry_index: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry_index` (0-based)."""
        rng = rng or random
        d = min(self.max_delay_s, self.base_delay_s * (2 ** retry_index))
        d = d * (1 - self.jitter * rng.random())
        if retry_after is not None and retry_after > 0:
            d = max(d, min(retry_after, self.max_retry_after_s))
        return d

    def batch_budget(self, samples: int) -> RetryBudget:
        cap = self.max_batch_retries if self.max_batch_retries is not None else max(100, 2 * samples)
        return RetryBudget(cap)


class RetryBudget:
    """Retries left for one batch; shared by all of its samples."""

    def __init__(self, cap: int):
        self.cap = cap
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.cap:
                return False
            self.used += 1
            return True
