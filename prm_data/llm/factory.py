"""Build backends and clients from config: switching model backends is one value, `kind`.

The run config holds one `BackendConfig` per role (policy, completer or
prover, judge); labelers receive the `LLMClient` that `make_client` builds
and never see which backend is behind it::

    policy = make_client(BackendConfig(kind="sim"), warehouse, run_id)
    policy = make_client(BackendConfig(kind="local"), warehouse, run_id)
    policy = make_client(BackendConfig(kind="openai", model="Qwen/Qwen2.5-Math-7B-Instruct",
                                       base_urls=("http://gpu1:8000/v1", "http://gpu2:8000/v1")),
                         warehouse, run_id)

What `model` means per kind: `sim` — the role, "sim-judge" (any name with
"judge", or `sim.role="judge"`), "sim-coder" (any other name with "coder", or
`sim.role="coder"`: the code simulator) or the policy otherwise; `local` — ignored,
the model is `local.model_path` (default: the bundled Qwen2.5-Coder-0.5B-Instruct);
`openai` and `vllm` — the served model name / the model path or Hub id.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from prm_data.failures import FailureLog
from prm_data.llm.cache import open_cache
from prm_data.llm.client import LLMClient
from prm_data.llm.retry import RetryPolicy
from prm_data.llm.sim_code import SimCoderParams
from prm_data.llm.types import Backend

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class SimParams(BaseModel):
    model_config = _FROZEN

    role: Literal["auto", "policy", "judge", "coder"] = Field(
        "auto", description="Synthetic role; auto = judge when the model name contains 'judge', coder (the code "
                            "simulator, prm_data/llm/sim_code.py) when it contains 'coder'.")
    error_rate: float = Field(0.15, ge=0, le=1, description="Policy: probability of an error at each step.")
    judge_accuracy: float = Field(0.7, ge=0, le=1, description="Judge: probability that each verdict is right.")
    solve_rate: float | None = Field(
        None, gt=0, le=1, description="Policy: chance of solving a problem from scratch; sets the per-step "
                                      "error rate (replaces error_rate). None: use error_rate.")
    cancel_rate: float = Field(0.05, ge=0, le=1, description="Policy: chance that an error is undone by the next step.")
    judge_correlation: float = Field(
        0.5, ge=0, le=1, description="Judge: share of verdicts decided by the step's shared difficulty (0 = independent).")
    rubric_adherence: float = Field(
        0.5, ge=0, le=1, description="Judge: chance that a step is checked against the rubric rule naming its operation.")
    fooled_rate: float = Field(
        0.0, ge=0, le=1, description="Judge: chance of accepting a solution with no checkable step (judge hacking).")
    latency_s: float = Field(0.0, ge=0, description="Simulated seconds per sample.")
    coder: SimCoderParams = Field(default_factory=SimCoderParams,
                                  description="Coder: the code simulator's bug rate, bug kinds and fix rate.")


class LocalParams(BaseModel):
    model_config = _FROZEN

    model_path: str | None = Field(
        None, description="A bundled model's name (qwen2.5-coder-0.5b-instruct, smollm2-135m-instruct), a .gguf "
                          "file or a local HF model directory; None = qwen2.5-coder-0.5b-instruct "
                          "(prm_data/llm/model_files.py).")
    dtype: Literal["bfloat16", "float32"] = Field("bfloat16", description="Weights and compute dtype on the CPU.")
    max_batch_size: int = Field(8, ge=1, description="Sequences decoded together.")
    max_batch_tokens: int = Field(
        16384, ge=256, description="Bound on sum(prompt + max_tokens) per batch, i.e. on KV-cache memory.")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; None = torch's default.")
    prefix_cache_mb: int = Field(
        512, ge=0, description="Memory for prompt-prefix key/values reused across samples and requests "
                               "(prm_data/llm/prefix_cache.py); 0 = prefill every sample's whole prompt.")


class VLLMParams(BaseModel):
    model_config = _FROZEN

    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per model replica.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of GPU memory vLLM may take.")
    max_model_len: int | None = Field(None, description="Context length cap; None = the model's.")
    dtype: str = Field("auto", description="Model dtype (auto, bfloat16, float16).")


class BackendConfig(BaseModel):
    model_config = _FROZEN

    kind: Literal["sim", "local", "openai", "vllm"] = Field("sim", description="Which backend serves this role.")
    model: str | None = Field(None, description="Model name (see the module docstring for what it means per kind).")
    base_urls: tuple[str, ...] = Field(
        (), description="openai: one or more OpenAI-compatible base URLs (…/v1), load-balanced by least outstanding.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="openai: environment variable holding the API key (never logged).")
    continuation: Literal["completions", "continue_final_message", "prefill", "instruction"] = Field(
        "continue_final_message",
        description="openai: how an assistant prefix is continued (completions = raw /v1/completions with a "
                    "client-side template; continue_final_message = vLLM chat flag; prefill = trailing "
                    "assistant message; instruction = prefix in the user message).")
    tokenizer_path: str | None = Field(
        None, description="openai/completions: local HF tokenizer whose chat template to apply (default ChatML).")
    timeout_s: float = Field(120.0, gt=0, description="Per-attempt request timeout in seconds.")
    max_retries: int = Field(4, ge=0, description="Retries per sample on 429/5xx/timeouts/garbage.")
    max_batch_retries: int | None = Field(
        None, ge=0, description="Retries per generate() batch; None = max(100, 2 x samples).")
    backoff_base_s: float = Field(0.5, ge=0, description="First backoff delay; doubles per retry, with jitter.")
    backoff_max_s: float = Field(30.0, ge=0, description="Backoff cap in seconds.")
    concurrency: int = Field(8, ge=1, description="Requests in flight at once (openai, sim).")
    sim: SimParams = Field(default_factory=SimParams, description="Parameters of the synthetic backend.")
    local: LocalParams = Field(default_factory=LocalParams, description="Parameters of the local CPU backend.")
    vllm: VLLMParams = Field(default_factory=VLLMParams, description="Parameters of the in-process vLLM engine.")

    @field_validator("base_urls")
    @classmethod
    def _http_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        """Each an http(s) URL with a host, without credentials in it (a key belongs in `api_key_env`)."""
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"base_urls: {url!r} is not an http(s) URL with a host (e.g. http://127.0.0.1:8000/v1)")
            if parts.username or parts.password:
                raise ValueError(f"base_urls: {parts.scheme}://{parts.hostname}... carries credentials: put the key "
                                 "in the environment variable named by api_key_env")
        return urls

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_retries=self.max_retries, max_batch_retries=self.max_batch_retries,
                           timeout_s=self.timeout_s, base_delay_s=self.backoff_base_s,
                           max_delay_s=self.backoff_max_s)


def make_backend(cfg: BackendConfig) -> Backend:
    if cfg.kind == "sim":
        from prm_data.llm.sim import SimBackend

        judge = cfg.sim.role == "judge" or (cfg.sim.role == "auto" and "judge" in (cfg.model or ""))
        coder = cfg.sim.role == "coder" or (cfg.sim.role == "auto" and not judge and "coder" in (cfg.model or ""))
        role = "sim-judge" if judge else "sim-coder" if coder else "sim-policy"
        return SimBackend(model=role, error_rate=cfg.sim.error_rate, coder=cfg.sim.coder,
                          solve_rate=cfg.sim.solve_rate, cancel_rate=cfg.sim.cancel_rate,
                          judge_accuracy=cfg.sim.judge_accuracy, judge_correlation=cfg.sim.judge_correlation,
                          rubric_adherence=cfg.sim.rubric_adherence, fooled_rate=cfg.sim.fooled_rate,
                          latency_s=cfg.sim.latency_s)
    if cfg.kind == "local":
        from prm_data.llm.local_backend import LocalBackend

        p = cfg.local
        return LocalBackend(model_path=p.model_path, dtype=p.dtype, max_batch_size=p.max_batch_size,
                            max_batch_tokens=p.max_batch_tokens, num_threads=p.num_threads,
                            prefix_cache_mb=p.prefix_cache_mb)
    if not cfg.model:
        raise ValueError(f"kind={cfg.kind} needs `model` (the served model name or path)")
    if cfg.kind == "openai":
        from prm_data.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(cfg.model, cfg.base_urls, api_key_env=cfg.api_key_env,
                             continuation=cfg.continuation, timeout_s=cfg.timeout_s,
                             tokenizer_path=cfg.tokenizer_path)
    from prm_data.llm.vllm_backend import VLLMBackend

    v = cfg.vllm
    return VLLMBackend(cfg.model, tensor_parallel_size=v.tensor_parallel_size,
                       gpu_memory_utilization=v.gpu_memory_utilization, max_model_len=v.max_model_len, dtype=v.dtype)


def make_client(cfg: BackendConfig, warehouse=None, run_id: str | None = None,
                failures: FailureLog | None = None) -> LLMClient:
    """A client for `cfg`; with a warehouse, every answer is cached there (under `run_id`).

    Clients of one (warehouse, run) in a process share one `RequestCache`.

    With a `run_id` and no `failures`, a fresh `FailureLog(run_id)` is made, so
    failed requests are always recorded (`client.failures`).
    """
    run = run_id or "adhoc"
    cache = open_cache(warehouse, run) if warehouse is not None else None
    if failures is None and run_id is not None:
        failures = FailureLog(run_id)
    return LLMClient(make_backend(cfg), cache=cache, concurrency=cfg.concurrency, failures=failures,
                     retry=cfg.retry_policy())
