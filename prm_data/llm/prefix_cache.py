"""Prompt-prefix key/value reuse for the local CPU backend (prefix caching, as vLLM does on GPUs).

The labeling job sends the same tokens again and again: every request starts
with the same system message and few-shot examples; the `n` samples of a
request share their whole prompt; the Monte Carlo continuations of step prefix
`i` repeat the rollout prompt and steps `1..i`. A transformer's key/value
tensors at position `t` depend only on tokens `0..t`, so the key/values of any
common token prefix can be computed once and reused (vLLM's automatic prefix
caching; Kwon et al. 2023, "Efficient Memory Management for Large Language
Model Serving with PagedAttention", arXiv:2309.06180; SGLang's RadixAttention,
Zheng et al. 2024, arXiv:2312.07104, keys the reuse by longest common prefix
as here).

`PrefixKVStore` keeps the prompt key/values of recent prompts (one batch-1
tensor pair per layer each) under a memory budget, least recently used out
first; `longest(ids)` returns the stored entry sharing the longest token
prefix with `ids`. `prefill(model, ids, store)` computes only the tokens past
that prefix, stores the whole prompt, and returns its key/values and the
logits of its last token.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass
class _Entry:
    ids: np.ndarray
    kv: list  # per layer (keys, values), each [1, heads, len, head_dim]
    nbytes: int


@dataclass
class PrefixStats:
    """Prompt tokens asked for vs computed (the rest came from the store or a sibling sample)."""

    prompt_tokens: int = 0
    computed_tokens: int = 0
    prefills: int = 0

    def as_dict(self) -> dict:
        reused = self.prompt_tokens - self.computed_tokens
        return {"prompt_tokens": self.prompt_tokens, "prefill_tokens_computed": self.computed_tokens,
                "prefill_tokens_reused": reused, "prefills": self.prefills,
                "reuse_share": round(reused / self.prompt_tokens, 4) if self.prompt_tokens else 0.0}


class PrefixKVStore:
    """Key/values of recent prompts, looked up by longest common token prefix; bounded in bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next = 0
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def longest(self, ids: np.ndarray) -> tuple[_Entry | None, int]:
        """(entry, length) of the stored prompt sharing the longest token prefix with `ids`."""
        best, best_len = None, 0
        for key, e in self._entries.items():
            m = min(len(e.ids), len(ids))
            if m <= best_len:
                continue
            diff = np.flatnonzero(e.ids[:m] != ids[:m])
            common = int(diff[0]) if len(diff) else m
            if common > best_len:
                best, best_len, best_key = e, common, key
        if best is not None:
            self._entries.move_to_end(best_key)
        return best, best_len

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    def put(self, ids: np.ndarray, kv: list) -> None:
        nbytes = sum(k.nbytes + v.nbytes for k, v in kv)
        if nbytes > self.max_bytes:
            return
        self._entries[self._next] = _Entry(ids, kv, nbytes)
        self._next += 1
        self.nbytes += nbytes
        while self.nbytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.nbytes -= old.nbytes


def cache_kwarg(model) -> str:
    """`cache` in transformers >= 5.2x, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def cache_layers(cache) -> list:
    """Per layer (keys, values) of a DynamicCache, across transformers versions."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


def cache_from_layers(layers) -> object:
    """A DynamicCache holding the given per-layer (keys, values)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for i, (k, v) in enumerate(layers):
        cache.update(k, v, i)
    return cache


def prefill(model, ids: list[int], store: PrefixKVStore | None, stats: PrefixStats):
    """(per-layer key/values of `ids`, logits of its last token), computing only what the store lacks.

    At least the last token is computed, so its logits are fresh.
    """
    import torch

    arr = np.asarray(ids, dtype=np.int64)
    entry, hit = store.longest(arr) if store is not None else (None, 0)
    hit = min(hit, len(ids) - 1)
    cache = cache_from_layers([(k[:, :, :hit], v[:, :, :hit]) for k, v in entry.kv]) if hit else None
    if cache is None:
        from transformers import DynamicCache

        cache = DynamicCache()
    new = torch.tensor([ids[hit:]], dtype=torch.long)
    out = model(input_ids=new, attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                position_ids=torch.arange(hit, len(ids)).unsqueeze(0), use_cache=True, logits_to_keep=1,
                **{cache_kwarg(model): cache})
    kv = cache_layers(cache)
    if store is not None:
        store.put(arr, kv)
    stats.prompt_tokens += len(ids)
    stats.computed_tokens += len(ids) - hit
    stats.prefills += 1
    return kv, out.logits[0, -1, :]


def batch_cache(kvs: list, lengths: list[int]):
    """Left-padded batch key/values (zeros where padded) from per-row batch-1 key/values."""
    import torch

    width = max(lengths)
    layers = []
    for layer in range(len(kvs[0])):
        k0, v0 = kvs[0][layer]
        keys = k0.new_zeros((len(kvs), k0.shape[1], width, k0.shape[3]))
        values = v0.new_zeros((len(kvs), v0.shape[1], width, v0.shape[3]))
        for r, (kv, n) in enumerate(zip(kvs, lengths)):
            keys[r, :, width - n:] = kv[layer][0][0]
            values[r, :, width - n:] = kv[layer][1][0]
        layers.append((keys, values))
    return cache_from_layers(layers), width
