"""The `openai` backend: any OpenAI-compatible server through `openai.AsyncOpenAI`.

Works against vLLM (`vllm serve`), SGLang, the llama.cpp server, OpenAI
itself and the test server (prm_data/serve_sim.py).

Continuing a partial assistant answer (`GenerationRequest.assistant_prefix`)
is done in one of four modes, because servers differ in what they support:

- `completions`: raw `/v1/completions`; the chat template is applied on the
  client (ChatML, or a local Hugging Face tokenizer's template, see
  prm_data/llm/chat_template.py) and the prefix appended after the assistant
  header. Exact continuation on any server with a completions endpoint.
- `continue_final_message`: `/v1/chat/completions` with the prefix as the
  last (assistant) message and vLLM's extension
  `extra_body={"continue_final_message": True, "add_generation_prompt": False}`.
- `prefill`: the prefix as the last assistant message with no flag
  (llama.cpp server, Anthropic-style prefill). llama.cpp answers with the
  whole assistant message, prefix included; a returned text that starts with
  the prefix has it cut off, in this mode and in `continue_final_message`.
- `instruction`: for APIs with none of the above: the prefix goes into the
  user message (prompts/continue.v1.jinja) with an instruction to continue
  it; a repeated prefix at the start of the answer is stripped.

Each base URL is one endpoint; requests go to the endpoint with the fewest
requests outstanding (ties: the one that served fewest). Errors map to
`BackendError`: 429, 408, 409, 5xx, timeouts, connection errors, malformed
JSON and empty choices are retryable (with `Retry-After`/`retry-after-ms`
parsed); other 4xx are not. The SDK's own retries are off: the client
(prm_data/llm/client.py) owns the retry policy. The API key is read from the
environment variable named by `api_key_env` when a connection pool is made;
it is never stored on the backend, logged or put in an error message (one a
server echoes it into is scrubbed), and credentials in a base URL are masked
in messages and in the `endpoint` recorded with each answer.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import re
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import openai

from prm_data.llm.chat_template import render_prompt
from prm_data.llm.tokens import count_tokens
from prm_data.llm.types import BackendError, GenerationRequest, Sample
from prm_data.prompts import render

ContinuationMode = Literal["completions", "continue_final_message", "prefill", "instruction"]
CONTINUATION_MODES: tuple[str, ...] = ("completions", "continue_final_message", "prefill", "instruction")
INSTRUCTION_PROMPT = "continue.v1"


@dataclass
class _Endpoint:
    url: str
    outstanding: int = 0
    served: int = 0


class OpenAIBackend:
    name = "openai"

    def __init__(self, model: str, base_urls: Sequence[str], api_key_env: str | None = "OPENAI_API_KEY",
                 continuation: ContinuationMode = "continue_final_message", timeout_s: float = 120.0,
                 tokenizer_path: str | None = None, send_seed: bool = True):
        if not base_urls:
            raise ValueError("the openai backend needs at least one base URL (e.g. http://127.0.0.1:8000/v1)")
        if continuation not in CONTINUATION_MODES:
            raise ValueError(f"continuation must be one of {CONTINUATION_MODES}, not {continuation!r}")
        self.model = model
        self.endpoints = [_Endpoint(u.rstrip("/")) for u in base_urls]
        self.api_key_env = api_key_env
        self.continuation = continuation
        self.timeout_s = timeout_s
        self.tokenizer_path = tokenizer_path
        self.send_seed = send_seed
        self._lock = threading.Lock()
        self._pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> {url: AsyncOpenAI}

    def __repr__(self) -> str:
        urls = ", ".join(e.url for e in self.endpoints)
        return f"OpenAIBackend(model={self.model!r}, base_urls=[{urls}], continuation={self.continuation!r})"

    # ------------------------------------------------------------ endpoints
    def _pick(self) -> _Endpoint:
        with self._lock:
            ep = min(self.endpoints, key=lambda e: (e.outstanding, e.served))
            ep.outstanding += 1
            return ep

    def _release(self, ep: _Endpoint, ok: bool) -> None:
        with self._lock:
            ep.outstanding -= 1
            ep.served += 1 if ok else 0

    def _client(self, ep: _Endpoint) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        pools = self._pools.setdefault(loop, {})
        client = pools.get(ep.url)
        if client is None:
            key = os.environ.get(self.api_key_env) if self.api_key_env else None
            client = openai.AsyncOpenAI(base_url=ep.url, api_key=key or "EMPTY", max_retries=0,
                                        timeout=self.timeout_s)
            pools[ep.url] = client
        return client

    async def aclose(self) -> None:
        """Close the connection pools made on the running event loop."""
        pools = self._pools.pop(asyncio.get_running_loop(), {})
        for client in pools.values():
            await client.close()

    # ------------------------------------------------------------ sampling
    async def generate_one(self, request: GenerationRequest, sample_index: int) -> Sample:
        key = request.sample_key(self.name, self.model, sample_index)
        common = {"model": self.model, "temperature": request.temperature, "top_p": request.top_p,
                  "max_tokens": request.max_tokens, "n": 1, "extra_headers": {"X-Request-Key": key},
                  "timeout": self.timeout_s}
        if request.stop:
            common["stop"] = list(request.stop)
        if self.send_seed:
            common["seed"] = int(key[:8], 16) % (2**31)  # one seed per sample, stable across reruns
        ep = self._pick()
        ok = False
        t0 = time.perf_counter()
        try:
            client = self._client(ep)
            if self.continuation == "completions":
                prompt = render_prompt(request.messages, request.assistant_prefix, self.tokenizer_path)
                if request.logprobs is not None:
                    common["logprobs"] = request.logprobs
                resp = await client.completions.create(prompt=prompt, **common)
            else:
                messages = chat_messages(request, self.continuation)
                if request.logprobs is not None:
                    common.update(logprobs=True, top_logprobs=request.logprobs)
                if request.assistant_prefix and self.continuation == "continue_final_message":
                    common["extra_body"] = {"continue_final_message": True, "add_generation_prompt": False}
                resp = await client.chat.completions.create(messages=messages, **common)
            sample = self._to_sample(resp, request, key, time.perf_counter() - t0, public_url(ep.url))
            ok = True
            return sample
        except BackendError as exc:
            raise self._scrubbed(exc) from None
        except openai.OpenAIError as exc:
            raise self._scrubbed(map_error(exc, public_url(ep.url))) from None
        except (ValueError, OSError) as exc:  # JSON decoding, sockets
            raise self._scrubbed(BackendError(f"{type(exc).__name__} from {public_url(ep.url)}: {exc}",
                                              retryable=True)) from None
        finally:
            self._release(ep, ok)

    def _scrubbed(self, err: BackendError) -> BackendError:
        """`err` without the API key, should the server have echoed it (its message is stored in `failures`)."""
        secret = os.environ.get(self.api_key_env) if self.api_key_env else None
        text = str(err)
        if not secret or len(secret) < 4 or secret not in text:
            return err
        return BackendError(text.replace(secret, "***"), retry_after=err.retry_after, retryable=err.retryable)

    def _to_sample(self, resp, request: GenerationRequest, key: str, latency: float, url: str) -> Sample:
        choices = getattr(resp, "choices", None)
        if not choices:
            raise BackendError(f"empty choices from {url}", retryable=True)
        choice = choices[0]
        if self.continuation == "completions":
            text = choice.text
        else:
            text = choice.message.content if choice.message is not None else None
        if text is None:
            raise BackendError(f"no text in the answer from {url}", retryable=True)
        prefix = request.assistant_prefix
        if prefix and self.continuation in ("prefill", "continue_final_message") and text.startswith(prefix):
            text = text[len(prefix):]  # llama.cpp returns the whole assistant message, prefix included
        elif self.continuation == "instruction" and prefix and text.lstrip().startswith(prefix.strip()):
            text = text.lstrip()[len(prefix.strip()):]  # the model repeated the prefix: keep the continuation
        extra = choice.model_extra or {}
        metadata = dict(extra.get("prm_metadata") or {})
        logprobs = _logprobs(choice)
        if logprobs is not None:
            metadata["logprobs"] = logprobs
        usage = getattr(resp, "usage", None)
        if usage is not None and usage.completion_tokens is not None:
            prompt_tokens, completion_tokens = usage.prompt_tokens or 0, usage.completion_tokens
        else:  # the server reported none: estimate, and say so
            shown = "\n".join(m.content for m in request.messages) + (prefix or "")
            prompt_tokens, completion_tokens = count_tokens(shown), count_tokens(text)
            metadata["usage_estimated"] = True
        metadata["endpoint"] = url
        return Sample(text=text, finish_reason=choice.finish_reason, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens, latency_s=latency, request_key=key,
                      metadata=metadata)


_USERINFO = re.compile(r"(?<=//)[^/@\s]+@")


def public_url(url: str) -> str:
    """`url` without credentials (`https://user:pass@host` -> `https://***@host`), for messages and metadata."""
    return _USERINFO.sub("***@", url)


def _logprobs(choice) -> list[float] | None:
    """Token logprobs in any of the shapes servers send: chat `content`, completions `token_logprobs`,
    as SDK objects or (for fields the SDK does not model, e.g. llama.cpp's completions) plain dicts."""
    lp = getattr(choice, "logprobs", None)
    if lp is None:
        return None

    def field(obj, name):
        return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)

    content = field(lp, "content")
    if content is not None:
        return [float(field(t, "logprob")) for t in content if field(t, "logprob") is not None]
    tokens = field(lp, "token_logprobs")
    if tokens is not None:
        return [float(x) for x in tokens if x is not None]
    return None


def parse_retry_after(headers) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = _number(headers.get("retry-after-ms"))
    if ms is not None:
        return max(0.0, ms / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # neither seconds nor a date: back off by our own schedule
    return max(0.0, when.timestamp() - time.time())


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def map_error(exc: openai.OpenAIError, url: str) -> BackendError:
    """An SDK exception as a `BackendError`, retryable or not, with Retry-After."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        try:
            retry_after = parse_retry_after(exc.response.headers)
        except (TypeError, ValueError):
            retry_after = None
        retryable = status in (408, 409, 429) or status >= 500
        detail = _short(exc)
        return BackendError(f"HTTP {status} from {url}: {detail}", retry_after=retry_after, retryable=retryable)
    if isinstance(exc, openai.APITimeoutError):
        return BackendError(f"timeout from {url}", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return BackendError(f"connection error from {url}: {type(cause).__name__}: {cause}", retryable=True)
    if isinstance(exc, openai.APIResponseValidationError):
        return BackendError(f"malformed response from {url}: {_short(exc)}", retryable=True)
    return BackendError(f"{type(exc).__name__} from {url}: {_short(exc)}", retryable=True)


def _short(exc: Exception, limit: int = 300) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and "message" in body:
        text = str(body["message"])
    else:
        text = str(exc)
    text = _error_message(text)
    return text if len(text) <= limit else text[:limit] + "..."


def _error_message(text: str) -> str:
    """The message inside a JSON error envelope, or the text itself."""
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return text


def chat_messages(request: GenerationRequest, continuation: str) -> list[dict]:
    """The chat messages sent for `request` in a chat continuation mode."""
    msgs = [{"role": m.role, "content": m.content} for m in request.messages]
    prefix = request.assistant_prefix
    if not prefix:
        return msgs
    if continuation == "instruction":
        users = [i for i, m in enumerate(request.messages) if m.role == "user"]
        at = users[-1] if users else len(msgs)
        user = request.messages[at].content if users else ""
        text = render(INSTRUCTION_PROMPT, user=user, prefix=prefix).messages[-1].content
        return msgs[:at] + [{"role": "user", "content": text}] + msgs[at + 1:]
    return msgs + [{"role": "assistant", "content": prefix}]
