"""The openai backend against the OpenAI-compatible test server over real HTTP."""

from __future__ import annotations

import pytest

from prm_data.llm.chat_template import parse_chatml, render_chatml, render_prompt
from prm_data.llm.client import LLMClient
from prm_data.llm.local_backend import bundled_gguf
from prm_data.llm.openai_backend import CONTINUATION_MODES, OpenAIBackend, chat_messages, parse_retry_after
from prm_data.llm.sim import split_blank_lines, true_first_error
from prm_data.llm.types import GenerationRequest, Message
from prm_data.serve_sim import ServeSimConfig, SimServer
from prm_data.sources.bank import generate_bank

pytestmark = pytest.mark.network

PROBLEM = generate_bank(1, seed=21, difficulty=5)[0]


@pytest.fixture(scope="module")
def server():
    with SimServer(ServeSimConfig(error_rate=0.3)) as srv:
        yield srv


@pytest.fixture(scope="module")
def echo_server():
    with SimServer(ServeSimConfig(error_rate=0.3, prefill_echo=True)) as srv:
        yield srv


def test_a_prefill_answer_that_repeats_the_prefix_is_cut_to_the_continuation(echo_server):
    reference = split_blank_lines(PROBLEM.reference_solution)
    prefix, sample = continue_from(echo_server, "prefill", reference[:2])
    assert split_blank_lines(sample.text)[0].startswith("Step 3:") and not sample.text.startswith(prefix)


def continue_from(server, mode: str, prefix_steps: list[str], seed: int = 0):
    prefix = "\n\n".join(prefix_steps) + "\n\n"
    req = GenerationRequest(messages=(Message("user", PROBLEM.question),), assistant_prefix=prefix, seed=seed)
    with LLMClient(OpenAIBackend("sim-policy", [server.url], continuation=mode)) as client:
        [result] = client.generate([req])
    assert result.ok, result.error
    return prefix, result.samples[0]


@pytest.mark.parametrize("mode", CONTINUATION_MODES)
def test_every_continuation_mode_continues_the_prefix_without_repeating_it(server, mode):
    reference = split_blank_lines(PROBLEM.reference_solution)
    for seed in range(4):
        prefix, sample = continue_from(server, mode, reference[:2], seed)
        continuation = split_blank_lines(sample.text)
        assert continuation[0].startswith("Step 3:")  # it picked up exactly where the prefix stopped
        full = reference[:2] + continuation
        assert len(full) == PROBLEM.difficulty
        assert sample.metadata["true_first_error"] == true_first_error(PROBLEM, full)
        assert sample.completion_tokens > 0 and sample.prompt_tokens > 0


@pytest.mark.parametrize("mode", CONTINUATION_MODES)
def test_an_error_in_the_prefix_is_the_first_error_of_every_continuation(server, mode):
    steps = split_blank_lines(PROBLEM.reference_solution)
    wrong = steps[0].replace("= ", "= 1", 1)  # the first result gets a leading 1: wrong arithmetic
    _, sample = continue_from(server, mode, [wrong])
    assert sample.metadata["true_first_error"] == 0


def test_requests_go_to_the_endpoint_with_fewest_outstanding():
    slow_cfg = ServeSimConfig(latency_s=0.6, max_concurrency=2)  # far slower than a busy machine makes the fast one
    with SimServer(slow_cfg) as slow, SimServer(ServeSimConfig(latency_s=0.01)) as fast:
        backend = OpenAIBackend("sim-policy", [slow.url, fast.url])
        reqs = [GenerationRequest(messages=(Message("user", PROBLEM.question),), seed=s) for s in range(60)]
        with LLMClient(backend, concurrency=6) as client:
            results = client.generate(reqs)
        assert all(r.ok for r in results)
        assert slow.requests_total >= 1 and fast.requests_total >= 3 * slow.requests_total
        assert slow.requests_total + fast.requests_total == 60


def test_the_same_sample_asked_twice_in_one_batch_is_generated_once(server):
    before = server.requests_total
    req = GenerationRequest(messages=(Message("user", PROBLEM.question),), seed=99, n=2)
    with LLMClient(OpenAIBackend("sim-policy", [server.url])) as client:
        results = client.generate([req, req])
    assert server.requests_total - before == 2  # two samples, not four
    assert results[0].texts == results[1].texts and client.stats.total.calls == 2
    assert client.stats.total.cache_hits == 2  # the repeats were served without a call


def test_the_judge_model_is_served_too(server):
    steps = split_blank_lines(PROBLEM.reference_solution)
    tagged = "".join(f"<step_{i}>{s}</step_{i}>" for i, s in enumerate(steps))
    prompt = f"<question>{PROBLEM.question}</question>\n{tagged}\nName the earliest wrong step."
    req = GenerationRequest(messages=(Message("user", prompt),), temperature=0.0)
    with LLMClient(OpenAIBackend("sim-judge", [server.url])) as client:
        [result] = client.generate([req])
    assert result.ok and "\\boxed{" in result.texts[0] and result.samples[0].metadata["true_first_error"] == -1


def test_stop_strings_and_max_tokens_are_applied_by_the_server(server):
    base = dict(messages=(Message("user", PROBLEM.question),), seed=3)
    with LLMClient(OpenAIBackend("sim-policy", [server.url], continuation="completions")) as client:
        stopped, short = client.generate([GenerationRequest(**base, stop=("\n\n",)),
                                          GenerationRequest(**base, max_tokens=5)])
    assert stopped.texts[0].startswith("Step 1:") and "Step 2" not in stopped.texts[0]
    assert stopped.samples[0].finish_reason == "stop"
    assert short.samples[0].finish_reason == "length" and short.samples[0].completion_tokens <= 5


def test_chatml_round_trips_through_the_completions_prompt():
    msgs = (Message("system", "Be brief."), Message("user", "What is 2 + 3?"))
    text = render_chatml(msgs, "Step 1: 2 + 3")
    assert parse_chatml(text) == (list(msgs), "Step 1: 2 + 3")
    assert parse_chatml(render_chatml(msgs)) == (list(msgs), "")
    assert parse_chatml("plain text") == ([Message("user", "plain text")], None)


def test_a_local_tokenizer_supplies_its_own_chat_template():
    msgs = (Message("user", "What is 2 + 3?"),)
    text = render_prompt(msgs, "Step 1:", tokenizer_path=str(bundled_gguf()))
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\nStep 1:")


def test_the_instruction_mode_puts_the_prefix_in_the_user_message():
    req = GenerationRequest(messages=(Message("system", "S"), Message("user", "Q?")), assistant_prefix="Step 1: x")
    msgs = chat_messages(req, "instruction")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[1]["content"].startswith("Q?") and "<answer_so_far>\nStep 1: x\n</answer_so_far>" in msgs[1]["content"]
    assert chat_messages(req, "prefill")[-1] == {"role": "assistant", "content": "Step 1: x"}


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after-ms": "250"}, 0.25), ({"retry-after": "3"}, 3.0), ({"retry-after": "0.5"}, 0.5),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0), ({"retry-after": "soon"}, None), ({}, None)])
def test_retry_after_is_read_in_every_form(headers, seconds):
    assert parse_retry_after(headers) == seconds
