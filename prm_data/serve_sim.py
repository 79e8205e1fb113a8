"""An OpenAI-compatible HTTP server that serves the synthetic policy and judge, with faults on demand.

It exists to test the `openai` backend over real HTTP (`prm-data serve-sim`,
or `with SimServer(cfg) as srv:` in tests) and to benchmark it against a
known capacity: with latency `L` and a concurrency cap `C` a server answers
at most `C / L` requests per second.

Endpoints: `GET /v1/models`, `POST /v1/chat/completions` (a trailing
assistant message is continued, as vLLM does with `continue_final_message`
and llama.cpp with a prefill), `POST /v1/completions` (the prompt is parsed
back from ChatML, prm_data/llm/chat_template.py). Answers come from
`SimBackend` (prm_data/llm/sim.py) and are a pure function of the request
body, seed included; each choice carries the sim's ground truth in an extra
field `prm_metadata` (e.g. `{"true_first_error": 2}`).

Faults, each at its own rate, decided by a hash of (seed, request body,
attempt number for that body) so a run is reproducible whatever the arrival
order: `429` (with `Retry-After` and `retry-after-ms`), `500`, `timeout`
(holds the connection past the client's timeout, then drops it), `malformed`
(a 200 whose body is not JSON), `empty` (a 200 with no choices) and
`truncated` (a 200 whose body stops halfway). Every request is logged per
body hash, so a test can check that nothing was asked again after it
succeeded (`asked_after_success()`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prm_data.llm.chat_template import parse_chatml
from prm_data.llm.sim import SimBackend, count_tokens
from prm_data.llm.sim_code import SimCoderParams
from prm_data.llm.types import GenerationRequest, Message

ANSWER_SO_FAR = re.compile(r"<answer_so_far>\n?(.*?)</answer_so_far>", re.S)
FAULT_KINDS = ("429", "500", "timeout", "malformed", "empty", "truncated")


class ServeSimConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_s: float = Field(0.0, ge=0, description="Seconds each answered request holds a concurrency slot.")
    max_concurrency: int = Field(0, ge=0, description="Requests served at once (0 = unlimited); capacity = this / latency.")
    over_capacity: Literal["queue", "reject"] = Field(
        "queue", description="Requests over the cap wait for a slot (queue) or get a 429 (reject).")
    retry_after_s: float = Field(0.2, ge=0, description="Retry-After sent with every 429.")
    timeout_sleep_s: float = Field(5.0, ge=0, description="How long a `timeout` fault holds the connection before dropping it.")
    rate_429: float = Field(0.0, ge=0, le=1, description="Share of requests answered 429 Too Many Requests.")
    rate_500: float = Field(0.0, ge=0, le=1, description="Share of requests answered 500 Internal Server Error.")
    rate_timeout: float = Field(0.0, ge=0, le=1, description="Share of requests never answered (connection dropped late).")
    rate_malformed: float = Field(0.0, ge=0, le=1, description="Share of requests answered 200 with a body that is not JSON.")
    rate_empty: float = Field(0.0, ge=0, le=1, description="Share of requests answered 200 with `choices: []`.")
    rate_truncated: float = Field(0.0, ge=0, le=1, description="Share of requests whose 200 body is cut off halfway.")
    seed: int = Field(0, description="Seed of the fault draws.")
    api_key: str | None = Field(None, description="If set, requests must carry `Authorization: Bearer <api_key>` (else 401).")
    error_rate: float = Field(0.15, ge=0, le=1, description="Sim policy: error probability per step.")
    judge_accuracy: float = Field(0.7, ge=0, le=1, description="Sim judge: probability each verdict is right.")
    cancel_rate: float = Field(0.05, ge=0, le=1, description="Sim policy: chance that an error is undone by the next step.")
    judge_correlation: float = Field(0.5, ge=0, le=1, description="Sim judge: share of verdicts set by shared step difficulty.")
    rubric_adherence: float = Field(0.5, ge=0, le=1, description="Sim judge: chance a step is checked against its rubric rule.")
    fooled_rate: float = Field(0.0, ge=0, le=1, description="Sim judge: chance of accepting a solution with no checkable step.")
    coder: SimCoderParams = Field(default_factory=SimCoderParams,
                                  description="Sim coder (models named *coder*): bug rate, bug kinds, fix rate.")
    prefill_echo: bool = Field(
        False, description="Answer a trailing assistant message (without continue_final_message) with the whole "
                           "message, prefix included, as the llama.cpp server does.")

    @model_validator(mode="after")
    def _rates_fit(self):
        if sum(self.fault_rates().values()) > 1 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        return self

    def fault_rates(self) -> dict[str, float]:
        return {k: getattr(self, f"rate_{k}") for k in FAULT_KINDS}


def _uniform(*parts: object) -> float:
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _text(content) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def request_from_body(path: str, body: dict) -> GenerationRequest:
    """The `GenerationRequest` an OpenAI-style body asks for (one sample; `n` handled by the caller)."""
    if path.endswith("/chat/completions"):
        msgs = [Message(m["role"], _text(m.get("content"))) for m in body["messages"]]
        prefix = None
        if msgs and msgs[-1].role == "assistant":  # continue_final_message or a prefill
            prefix = msgs[-1].content
            msgs = msgs[:-1]
        elif msgs and (m := ANSWER_SO_FAR.search(msgs[-1].content)):  # the instruction mode
            prefix = m.group(1).strip("\n")
            prefix = prefix + "\n\n" if prefix else prefix
    else:
        prompt = body["prompt"]
        prompt = prompt[0] if isinstance(prompt, list) else prompt
        msgs, prefix = parse_chatml(prompt)
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    return GenerationRequest(
        messages=tuple(msgs), assistant_prefix=prefix,
        temperature=float(body.get("temperature", 1.0) or 0.0), top_p=float(body.get("top_p", 1.0) or 1.0),
        max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 512),
        stop=stop, seed=int(body.get("seed") or 0))


def _apply_limits(text: str, request: GenerationRequest) -> tuple[str, str]:
    """Cut at the first stop string (excluded, as OpenAI does) and at max_tokens."""
    finish = "stop"
    cut = min((i for i in (text.find(s) for s in request.stop if s) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
    if count_tokens(text) > request.max_tokens:
        words = text.split(" ")
        keep = max(0, int(request.max_tokens / 1.3))
        text, finish = " ".join(words[:keep]), "length"
    return text, finish


class SimServer:
    """The server, in a background thread. Use as a context manager; `url` ends with `/v1`."""

    def __init__(self, config: ServeSimConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.config = config or ServeSimConfig()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.config.max_concurrency) if self.config.max_concurrency else None
        self.log: dict[str, list[str]] = defaultdict(list)  # body hash -> outcomes, in arrival order
        self.request_keys: dict[str, str] = {}  # body hash -> the client's X-Request-Key header
        self.in_flight = 0
        self.max_in_flight = 0
        self.served = Counter()  # requests, prompt_tokens, completion_tokens of the answers delivered ("ok")
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self), bind_and_activate=False)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = self._handle_error
        self._httpd.block_on_close = False
        self._httpd.request_queue_size = 1024
        self._httpd.allow_reuse_address = True
        self._httpd.server_bind()
        self._httpd.server_activate()
        self._thread: threading.Thread | None = None

    def _handle_error(self, request, client_address) -> None:
        """A client that went away mid-request (killed, or timed out) is normal here: no traceback."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        ThreadingHTTPServer.handle_error(self._httpd, request, client_address)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}/v1"

    def start(self) -> SimServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="serve-sim", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop the background thread started by `start()` and close the socket."""
        self._stop.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def stop_listening(self) -> None:
        """Close the socket after `serve_forever()` returned (the CLI path)."""
        self._stop.set()
        self._httpd.server_close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -------------------------------------------------------------- counters
    def outcomes(self) -> Counter:
        with self._lock:
            return Counter(o for outs in self.log.values() for o in outs)

    @property
    def requests_total(self) -> int:
        with self._lock:
            return sum(len(v) for v in self.log.values())

    def succeeded(self) -> set[str]:
        with self._lock:
            return {k for k, outs in self.log.items() if "ok" in outs}

    def asked_after_success(self) -> list[str]:
        """Body hashes requested again after a successful answer was delivered (should be none)."""
        with self._lock:
            return [k for k, outs in self.log.items() if "ok" in outs and outs.index("ok") != len(outs) - 1]

    # ---------------------------------------------------------------- faults
    def _decide(self, key: str) -> tuple[str | None, int]:
        with self._lock:
            attempt = len(self.log[key])
            self.log[key].append("pending")
        u = _uniform(self.config.seed, key, attempt)
        acc = 0.0
        for kind, rate in self.config.fault_rates().items():
            acc += rate
            if u < acc:
                return kind, attempt
        return None, attempt

    def _record(self, key: str, attempt: int, outcome: str) -> None:
        with self._lock:
            self.log[key][attempt] = outcome

    def _enter(self) -> bool:
        if self._slots is not None:
            if self.config.over_capacity == "reject":
                if not self._slots.acquire(blocking=False):
                    return False
            else:
                self._slots.acquire()
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return True

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
        if self._slots is not None:
            self._slots.release()

    def answer(self, path: str, body: dict) -> dict:
        """The full response body for a request (pure: same body, same answer)."""
        model = body.get("model") or "sim-policy"
        c = self.config
        role = model if "judge" in model or "coder" in model else "sim-policy"
        sim = SimBackend(model=role, error_rate=c.error_rate, coder=c.coder,
                         cancel_rate=c.cancel_rate, judge_accuracy=c.judge_accuracy,
                         judge_correlation=c.judge_correlation, rubric_adherence=c.rubric_adherence,
                         fooled_rate=c.fooled_rate)
        req = request_from_body(path, body)
        prompt_text = "\n".join(m.content for m in req.messages) + (req.assistant_prefix or "")
        choices, completion_tokens = [], 0
        for i in range(int(body.get("n") or 1)):
            text, meta = sim.complete(req, req.sample_key("serve-sim", model, i))
            text, finish = _apply_limits(text, req)
            completion_tokens += count_tokens(text)
            if path.endswith("/chat/completions"):
                messages = body.get("messages") or []
                echo = (c.prefill_echo and req.assistant_prefix and messages[-1].get("role") == "assistant"
                        and not body.get("continue_final_message"))
                content = req.assistant_prefix + text if echo else text  # llama.cpp's prefill answer
                choice = {"index": i, "message": {"role": "assistant", "content": content}}
            else:
                choice = {"index": i, "text": text}
            choice.update({"finish_reason": finish, "logprobs": None, "prm_metadata": meta})
            choices.append(choice)
        kind = "chat.completion" if path.endswith("/chat/completions") else "text_completion"
        return {"id": f"sim-{uuid.uuid4().hex[:16]}", "object": kind, "created": int(time.time()),
                "model": model, "choices": choices,
                "usage": {"prompt_tokens": count_tokens(prompt_text), "completion_tokens": completion_tokens,
                          "total_tokens": count_tokens(prompt_text) + completion_tokens}}


def _make_handler(server: SimServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # quiet: counters are the record
            return

        def _send(self, status: int, payload: bytes, headers: dict | None = None, cut: bool = False) -> bool:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 2] if cut else payload)
                self.wfile.flush()
                return True
            except OSError:  # the client went away (it timed out): not delivered
                self.close_connection = True
                return False

        def _error(self, status: int, message: str, headers: dict | None = None) -> bool:
            body = json.dumps({"error": {"message": message, "type": "sim_error", "code": status}}).encode()
            return self._send(status, body, headers)

        def do_GET(self):
            key_want = server.config.api_key  # as vLLM's --api-key: every /v1 route needs the key
            if key_want is not None and self.headers.get("Authorization") != f"Bearer {key_want}":
                self._error(401, "invalid api key")
                return
            if self.path.rstrip("/") == "/v1/models":
                data = [{"id": m, "object": "model", "owned_by": "prm-data"}
                        for m in ("sim-policy", "sim-judge", "sim-coder")]
                self._send(200, json.dumps({"object": "list", "data": data}).encode())
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.rstrip("/")
            if path not in ("/v1/chat/completions", "/v1/completions"):
                self._error(404, f"no route {self.path}")
                return
            key_want = server.config.api_key
            if key_want is not None and self.headers.get("Authorization") != f"Bearer {key_want}":
                self._error(401, "invalid api key")
                return
            try:
                body = json.loads(raw)
                request_from_body(path, body)
            except (ValueError, KeyError, TypeError) as exc:
                self._error(400, f"bad request: {exc}")
                return
            key = hashlib.sha256(path.encode() + b"\x1f" + json.dumps(body, sort_keys=True).encode()).hexdigest()
            if self.headers.get("X-Request-Key"):
                with server._lock:
                    server.request_keys[key] = self.headers["X-Request-Key"]
            fault, attempt = server._decide(key)
            cfg = server.config
            if fault == "429":
                server._record(key, attempt, "429")
                self._error(429, "rate limited (injected)", _retry_after(cfg.retry_after_s))
                return
            if fault == "500":
                server._record(key, attempt, "500")
                self._error(500, "internal error (injected)")
                return
            if fault == "timeout":
                server._record(key, attempt, "timeout")
                server._stop.wait(cfg.timeout_sleep_s)
                self.close_connection = True  # drop it without an answer
                return
            payload = server.answer(path, body)  # the CPU work happens outside the slot:
            if fault == "empty":  # a slot models the model's time only, so capacity is C / latency
                payload["choices"] = []
            data = json.dumps(payload).encode()
            if fault == "malformed":
                data = b'{"id": "sim", "choices": [{"text": ' + data[:20] + b" <<garbage"
            if not server._enter():
                server._record(key, attempt, "over_capacity")
                self._error(429, "over capacity", _retry_after(cfg.retry_after_s))
                return
            try:
                if cfg.latency_s:
                    server._stop.wait(cfg.latency_s)
            finally:
                server._leave()
            delivered = self._send(200, data, cut=fault == "truncated")
            if fault == "truncated":
                self.close_connection = True
            server._record(key, attempt, fault or ("ok" if delivered else "undelivered"))
            if delivered and fault is None:
                with server._lock:
                    server.served.update(requests=1, **{k: payload["usage"][k] for k in
                                                        ("prompt_tokens", "completion_tokens")})

    return Handler


def _retry_after(seconds: float) -> dict:
    return {"Retry-After": str(max(0, math.ceil(seconds)) if seconds >= 1 else round(seconds, 3)),
            "retry-after-ms": str(int(seconds * 1000))}
