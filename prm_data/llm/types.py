"""Requests and results: the contract between labelers and model backends.

A `GenerationRequest` asks for `n` samples. The client splits it into one
sample per cache key (hash of backend, model, prompt, prefix, sampling
parameters, seed and sample index), so samples already paid for are reused and
a request for more samples later pays only for the new ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt, sampled `n` times.

    `assistant_prefix` is a partial assistant answer to continue (the step
    prefix whose continuations we sample); backends that cannot continue a
    message natively fall back to the modes described in prm_data/llm/openai_backend.py.
    """

    messages: tuple[Message, ...]
    assistant_prefix: str | None = None
    n: int = 1
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int = 0
    logprobs: int | None = None
    purpose: str = "generate"  # accounting bucket: rollout, mc_value, judge, ...
    item_id: str | None = None  # what the request is about (rollout id, problem id), for failures

    def sampling_params(self) -> dict:
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stop": list(self.stop),
            "logprobs": self.logprobs,
        }

    def sample_key(self, backend: str, model: str, sample_index: int) -> str:
        """Content hash identifying one sample of this request."""
        payload = {
            "backend": backend,
            "model": model,
            "messages": [[m.role, m.content] for m in self.messages],
            "assistant_prefix": self.assistant_prefix,
            "params": self.sampling_params(),
            "seed": self.seed,
            "sample_index": sample_index,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class Sample:
    """One generated text (the continuation only, never the prefix)."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    request_key: str
    cached: bool = False
    metadata: dict = field(default_factory=dict)  # e.g. {"true_first_error": 2} from the sim policy


@dataclass(frozen=True)
class GenerationResult:
    """The samples of one request. `error` is set when some samples could not be had.

    A failed request is never an exception that kills the run: it comes back
    with `error` set and fewer samples than asked, and the client writes a
    `failures` row for it.
    """

    request: GenerationRequest
    samples: tuple[Sample, ...]
    error: str | None = None

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.samples]

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.samples if not s.cached)

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self.samples if not s.cached)


@runtime_checkable
class Backend(Protocol):
    """A model server or engine that produces single samples.

    `generate_one` returns one sample for (request, sample_index); the client
    handles batching, caching, concurrency and failure records. Backends with
    a native batch path (vLLM offline, local transformers) also implement
    `generate_batch`.
    """

    name: str
    model: str

    async def generate_one(self, request: GenerationRequest, sample_index: int) -> Sample: ...


class BackendError(RuntimeError):
    """A backend failed in a way worth retrying (timeouts, 429, 5xx, garbage)."""

    def __init__(self, message: str, retry_after: float | None = None, retryable: bool = True):
        super().__init__(message)
        self.retry_after = retry_after
        self.retryable = retryable
