"""The `vllm` backend: the in-process offline engine (`vllm.LLM`) for batch jobs on a GPU.

vLLM (Kwon et al. 2023, "Efficient Memory Management for Large Language
Model Serving with PagedAttention", arXiv:2309.06180) is an optional extra
(`pip install 'prm-data[vllm]'`, CUDA GPU required). It is imported only
when a `VLLMBackend` is made; where it is missing, that raises
`VLLMUnavailable` saying how to install it or to use the `openai` backend
against a `vllm serve` server instead.

Automatic prefix caching is on (`enable_prefix_caching=True`): Monte Carlo
rollouts and tree expansion send many requests that share a long prefix
(the question and the first steps), and the engine then computes each
shared prefix once. Prompts are rendered with the model's own chat template
and the assistant prefix appended, so continuation is exact. Every sample is
one engine request with its own `SamplingParams(seed=...)`, the seed taken
from the request key, so samples are reproducible one by one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prm_data.llm.types import BackendError, GenerationRequest, Sample


class VLLMUnavailable(ImportError):
    """vLLM is not installed (or cannot be imported) in this environment."""


def import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise VLLMUnavailable(
            f"the vllm backend needs the vLLM package, which could not be imported ({exc}). "
            "Install it on a machine with a CUDA GPU: pip install 'prm-data[vllm]'. "
            "Or run `vllm serve MODEL` elsewhere and use kind=openai with its base URL."
        ) from exc
    return vllm


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, dtype: str = "auto", max_batch_size: int = 1024,
                 engine_kwargs: dict | None = None):
        vllm = import_vllm()
        self.model = model
        self.max_batch_size = max_batch_size
        self._sampling_params = vllm.SamplingParams
        kwargs = {"model": model, "enable_prefix_caching": True, "tensor_parallel_size": tensor_parallel_size,
                  "gpu_memory_utilization": gpu_memory_utilization, "dtype": dtype}
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        kwargs.update(engine_kwargs or {})
        self.llm = vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def prompt_text(self, request: GenerationRequest) -> str:
        text = self.tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in request.messages],
                                                  tokenize=False, add_generation_prompt=True)
        return text + (request.assistant_prefix or "")

    def sampling_params(self, request: GenerationRequest, key: str):
        return self._sampling_params(n=1, temperature=request.temperature, top_p=request.top_p,
                                     max_tokens=request.max_tokens, stop=list(request.stop) or None,
                                     seed=int(key[:8], 16) % (2**31), logprobs=request.logprobs)

    async def generate_one(self, request: GenerationRequest, sample_index: int) -> Sample:
        out = (await asyncio.to_thread(self.generate_batch, [(request, sample_index)]))[0]
        if isinstance(out, BackendError):
            raise out
        return out

    def generate_batch(self, items: Sequence[tuple[GenerationRequest, int]]) -> list[Sample | BackendError]:
        keys = [req.sample_key(self.name, self.model, i) for req, i in items]
        prompts = [self.prompt_text(req) for req, _ in items]
        params = [self.sampling_params(req, k) for (req, _), k in zip(items, keys)]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [_to_sample(o, k) for o, k in zip(outputs, keys)]


def _to_sample(output, key: str) -> Sample | BackendError:
    """A vLLM `RequestOutput` (one completion) as a `Sample`."""
    if not output.outputs:
        return BackendError(f"vLLM returned no completion for {key}", retryable=True)
    c = output.outputs[0]
    metadata = {}
    if getattr(output, "num_cached_tokens", None) is not None:
        metadata["prefix_cached_tokens"] = output.num_cached_tokens
    if c.logprobs:
        metadata["logprobs"] = [lp[t].logprob for t, lp in zip(c.token_ids, c.logprobs) if t in lp]
    metrics = getattr(output, "metrics", None)
    latency = 0.0
    if metrics is not None and getattr(metrics, "finished_time", None) and getattr(metrics, "arrival_time", None):
        latency = metrics.finished_time - metrics.arrival_time
    return Sample(text=c.text, finish_reason=c.finish_reason, prompt_tokens=len(output.prompt_token_ids or []),
                  completion_tokens=len(c.token_ids), latency_s=latency, request_key=key, metadata=metadata)
