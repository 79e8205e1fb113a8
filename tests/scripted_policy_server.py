"""A scripted OpenAI-compatible chat server on 127.0.0.1: fixed solutions, continued from any prefix.

Each problem (found by a keyword of its question) has a list of whole solutions, each a list of
blank-line steps. A request carries the question and, as the last assistant message, the step
prefix to continue (`continue_final_message`, the openai backend's default mode); the server picks,
by the request's seed, one of the solutions whose first steps are that prefix and answers with its
remaining steps (or "Done." when the prefix is a whole solution). It is a test instrument: what it
answers is exactly the table it was given, nothing is learnt or simulated.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _steps(text: str) -> list[str]:
    return [s.strip() for s in text.split("\n\n") if s.strip()]


class ScriptedPolicyServer:
    def __init__(self, solutions: dict[str, list[list[str]]]):
        self.solutions = solutions
        self.requests = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                text = owner.answer(body)
                payload = json.dumps({
                    "id": "scripted", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": max(1, len(text) // 4),
                              "total_tokens": 10 + max(1, len(text) // 4)}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def answer(self, body: dict) -> str:
        with self._lock:
            self.requests += 1
        messages = body["messages"]
        question = next(m["content"] for m in messages if m["role"] == "user" and
                        any(k in m["content"] for k in self.solutions))
        key = next(k for k in self.solutions if k in question)
        prefix = _steps(messages[-1]["content"]) if messages[-1]["role"] == "assistant" else []
        fits = [s for s in self.solutions[key] if s[: len(prefix)] == prefix]
        if not fits:
            raise ValueError(f"no scripted solution of {key!r} starts with {prefix!r}")
        seed = int(hashlib.sha256(str(body.get("seed")).encode()).hexdigest()[:8], 16)
        rest = fits[seed % len(fits)][len(prefix):]
        return "\n\n".join(rest) if rest else "Done."

    def __enter__(self) -> "ScriptedPolicyServer":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
