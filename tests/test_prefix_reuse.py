"""Prompt-prefix key/value reuse on the local backend: fewer prefill tokens, the same answers.

The model is a tiny Llama (2 layers, grouped-query attention like Qwen2.5) with a byte-level BPE
tokenizer trained here (prm_data/train/tiny.py) and a ChatML template, in float32, so that "the
same answers" is not blurred by bfloat16 rounding and the test needs no model package.
"""

from __future__ import annotations

import numpy as np
import pytest

from prm_data.llm.client import LLMClient
from prm_data.llm.local_backend import LocalBackend
from prm_data.llm.prefix_cache import PrefixKVStore
from prm_data.llm.types import GenerationRequest
from prm_data.prompts import render

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
QUESTIONS = ["Ava has 7 coins. Then Ava gets 5 more coins. How many coins does Ava have now?",
             "Tom has 12 cards. Then Tom gives away 4 cards. Then Tom gets 2 more cards. "
             "How many cards does Tom have now?"]


def labeling_requests(temperature: float) -> list[GenerationRequest]:
    """Rollout-like requests (n=3 of one prompt) and continuations of a chain of step prefixes."""
    reqs = []
    for q in QUESTIONS:
        messages = render("solve.v2", question=q, examples=[]).messages
        common = dict(messages=messages, temperature=temperature, top_p=0.9, max_tokens=12,
                      stop=("\nProblem:",), seed=3)
        reqs.append(GenerationRequest(n=3, **common))
        reqs.append(GenerationRequest(assistant_prefix="Step 1: ", n=2, **common))
        reqs.append(GenerationRequest(assistant_prefix="Step 1: Tom starts with 12 cards.\n\n", n=2, **common))
    return reqs


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A randomly initialised 2-layer Llama and a tokenizer trained on the prompts, saved as a HF directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from prm_data.train.tiny import train_tokenizer

    texts = [m.content for q in QUESTIONS for m in render("solve.v2", question=q, examples=[]).messages]
    tok = train_tokenizer(texts * 4, vocab_size=400)
    tok.chat_template = CHATML
    out = tmp_path_factory.mktemp("tiny-chat-model")
    tok.save_pretrained(str(out))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id,
                         initializer_range=0.5)  # large random weights: sharp attention, so the answer
    #                                              depends on the whole context, positions included
    LlamaForCausalLM(config).save_pretrained(str(out))
    return str(out)


@pytest.fixture(scope="module")
def backends(tiny_model):
    plain = LocalBackend(tiny_model, dtype="float32", max_batch_size=16, prefix_cache_mb=0)
    reuse = LocalBackend(tiny_model, dtype="float32", max_batch_size=16, prefix_cache_mb=64)
    return plain, reuse


def answers(backend, reqs) -> list[tuple[str, int, int]]:
    with LLMClient(backend) as client:
        results = client.generate(reqs)
    assert all(r.ok for r in results)
    return [(s.text, s.prompt_tokens, s.completion_tokens) for r in results for s in r.samples]


@pytest.mark.parametrize("temperature", [0.0, 0.8], ids=["greedy", "seeded_sampling"])
def test_answers_with_reuse_equal_answers_without(backends, temperature):
    plain, reuse = backends
    reuse.clear_prefix_cache()
    reqs = labeling_requests(temperature)
    without, with_reuse = answers(plain, reqs), answers(reuse, reqs)
    assert with_reuse == without  # texts and token counts, sample by sample
    assert without[0][0] != without[7][0]  # the model reads its context: the two questions' answers differ
    if temperature > 0:
        assert len({text for text, _, _ in without[:3]}) >= 2  # seeded samples of one prompt differ
    stats = reuse.prefix_stats
    assert stats.prompt_tokens == sum(p for _, p, _ in without)  # the same prompt tokens were asked for
    assert stats.prefills == 2 * 3  # one prefill per distinct prompt, not per sample
    assert stats.computed_tokens < 0.5 * stats.prompt_tokens


def test_a_later_request_reuses_the_stored_prompt_and_computes_only_its_new_tokens(backends):
    _, reuse = backends
    reuse.clear_prefix_cache()
    messages = render("solve.v2", question=QUESTIONS[0], examples=[]).messages
    first = GenerationRequest(messages=messages, assistant_prefix="Step 1: Ava starts with 7 coins.",
                              temperature=0.0, max_tokens=4)
    reuse.generate_batch([(first, 0)])
    asked_first = reuse.prefix_stats.computed_tokens
    longer = GenerationRequest(messages=messages, temperature=0.0, max_tokens=4,
                               assistant_prefix="Step 1: Ava starts with 7 coins. Ava gets 5 more, so")
    [sample] = reuse.generate_batch([(longer, 0)])
    new_tokens = reuse.prefix_stats.computed_tokens - asked_first
    _, tok = reuse._engine()
    added = len(tok(" Ava gets 5 more, so", add_special_tokens=False)["input_ids"])
    assert asked_first == reuse.prefix_stats.prompt_tokens - sample.prompt_tokens  # nothing reused the first time
    assert 1 <= new_tokens <= added + 1  # only the continuation's tokens (+1 at the token boundary)
    [again] = reuse.generate_batch([(longer, 1)])  # a new Monte Carlo sample of the same prefix
    assert reuse.prefix_stats.computed_tokens - asked_first - new_tokens == 1  # only its last token is recomputed
    assert again.prompt_tokens == sample.prompt_tokens


def test_the_store_keeps_the_longest_common_prefix_and_evicts_the_least_recently_used():
    import torch

    kv = lambda n: [(torch.zeros(1, 2, n, 4), torch.zeros(1, 2, n, 4))]  # noqa: E731  64 bytes per token
    store = PrefixKVStore(max_bytes=64 * 24)
    store.put(np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), kv(10))
    store.put(np.array([1, 2, 3, 9, 9]), kv(5))
    entry, n = store.longest(np.array([1, 2, 3, 4, 5, 0]))
    assert n == 5 and len(entry.ids) == 10  # a shared prefix of a longer stored prompt counts
    store.put(np.array([7, 7, 7, 7, 7, 7, 7, 7, 7, 7]), kv(10))  # over budget: [1,2,3,9,9] was used least recently
    assert len(store) == 2 and store.longest(np.array([1, 2, 3, 9, 9]))[1] == 3
    assert store.nbytes == 64 * 20
