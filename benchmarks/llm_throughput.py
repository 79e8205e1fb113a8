"""Model-layer throughput: the openai backend against a server of known capacity, the local model vs its runtime.

1. openai backend vs capacity. The test server (prm_data/serve_sim.py) holds
   each request `latency` seconds in one of `C` slots, so it can answer at
   most C / latency requests per second. The client (prm_data/llm/client.py,
   concurrency 2C so the server's slots never idle) sends a batch of
   synthetic-policy requests through `OpenAIBackend` over real HTTP on
   127.0.0.1 to the server in its own process; achieved requests/s is divided
   by that capacity (goal >= 0.9).
2. local backend vs its runtime. The same prompts go once through the
   pipeline (`LLMClient` + `LocalBackend`: per-row seeds, stop strings,
   finished rows dropped) and once through the runtime's own
   `model.generate` on a left-padded batch, in the same process, on the same
   loaded model, both decoding in a worker thread (where the client runs a
   batch backend); both count only real generated tokens (up to each row's
   end of turn), at batch size 1 and 8.

3. prompt-prefix reuse on the local backend (`prefix_reuse`). A labeling
   workload as the default job sends it (bank problems, `solve.v2` rollouts,
   then Monte Carlo continuations of every step prefix through the real
   `generate_rollouts`, `Completer` and `label_mc_value`) runs twice in one
   process on one loaded model: with `prefix_cache_mb=0` (every sample
   prefills its whole prompt) and with reuse. Reported: prompt tokens asked
   for, prefill tokens computed, wall seconds, generated tokens/s, and whether
   every answer (rollout and continuation texts) is the same: once greedy
   (temperature 0), once sampled with seeds (temperature 0.5).

Run: `python benchmarks/llm_throughput.py [--quick] [--only prefix_reuse]`; prints a table and
writes benchmarks/results/llm_throughput.json. `run(quick)` returns the same
dict. Numbers depend on the machine and on what else runs on it: the load
average at the start is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import threading
import time
from pathlib import Path

from prm_data.llm.client import LLMClient
from prm_data.llm.openai_backend import OpenAIBackend
from prm_data.llm.retry import RetryPolicy
from prm_data.llm.types import GenerationRequest, Message
from prm_data.serve_sim import ServeSimConfig, SimServer
from prm_data.sources.bank import generate_bank

RESULTS = Path(__file__).resolve().parent / "results"
STORY = "Write a long, detailed story about a lighthouse keeper and a storm. Do not stop early."


def _serve(cfg: ServeSimConfig, ports) -> None:
    server = SimServer(cfg)
    ports.put(server.port)
    server.serve_forever()


def openai_vs_capacity(slots: int, latency_s: float, count: int, continuation: str = "completions") -> dict:
    """Achieved requests/s through the openai backend; the server runs in its own process, as a real one would."""
    problems = generate_bank(max(1, count // 4), seed=101)
    reqs = [GenerationRequest(messages=(Message("user", p.question),), seed=s) for p in problems for s in range(4)]
    reqs = reqs[:count]
    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(ServeSimConfig(latency_s=latency_s, max_concurrency=slots), ports),
                       daemon=True)
    proc.start()
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=120)}/v1"
        backend = OpenAIBackend("sim-policy", [url], continuation=continuation)
        with LLMClient(backend, concurrency=2 * slots, retry=RetryPolicy(timeout_s=30)) as client:
            client.generate([GenerationRequest(messages=(Message("user", "warm up"),), seed=s)
                             for s in range(2 * slots)])  # open the connections first
            t0 = time.perf_counter()
            results = client.generate(reqs)
            wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.join(timeout=10)
    capacity = slots / latency_s
    achieved = len(reqs) / wall
    return {"slots": slots, "latency_s": latency_s, "requests": len(reqs), "continuation": continuation,
            "failed": sum(not r.ok for r in results), "wall_s": round(wall, 3),
            "capacity_rps": round(capacity, 1), "achieved_rps": round(achieved, 1),
            "ratio": round(achieved / capacity, 3)}


def _in_worker_thread(fn):
    """Run `fn` in a fresh thread, as the client runs a batch backend (asyncio.to_thread), and time it."""
    out = {}

    def target():
        t0 = time.perf_counter()
        out["value"] = fn()
        out["s"] = time.perf_counter() - t0

    t = threading.Thread(target=target)
    t.start()
    t.join()
    return out["value"], out["s"]


def local_vs_raw(batch_sizes: tuple[int, ...], max_tokens: int) -> list[dict]:
    import torch

    from prm_data.llm.local_backend import LocalBackend, load_model

    backend = LocalBackend(max_batch_size=max(batch_sizes), prefix_cache_mb=0)  # the decode loop alone
    t0 = time.perf_counter()
    model, tok = load_model(backend.model_path)
    load_s = time.perf_counter() - t0
    eos = {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}
    rows = []
    for b in batch_sizes:
        reqs = [GenerationRequest(messages=(Message("user", STORY),), temperature=0.7, max_tokens=max_tokens,
                                  seed=1000 * b + i) for i in range(b)]
        backend.generate_batch([(reqs[0], 99)])  # warm-up at this shape family
        with LLMClient(backend) as client:
            t0 = time.perf_counter()
            results = client.generate(reqs)
            pipe_s = time.perf_counter() - t0
        pipe_tokens = sum(s.completion_tokens for r in results for s in r.samples)

        tok.padding_side = "left"
        enc = tok([backend.prompt_text(r) for r in reqs], return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(b)
        pad = tok.pad_token_id if tok.pad_token_id is not None else min(eos)

        def raw(enc=enc, pad=pad):
            with torch.inference_mode():
                return model.generate(**enc, max_new_tokens=max_tokens, do_sample=True, temperature=0.7,
                                      top_p=1.0, pad_token_id=pad)

        out, raw_s = _in_worker_thread(raw)
        raw_tokens = 0
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            for t in row:
                raw_tokens += 1
                if t in eos:
                    break
        rows.append({"batch": b, "max_tokens": max_tokens,
                     "pipeline_tokens": pipe_tokens, "pipeline_s": round(pipe_s, 2),
                     "pipeline_tok_s": round(pipe_tokens / pipe_s, 1),
                     "raw_tokens": raw_tokens, "raw_s": round(raw_s, 2), "raw_tok_s": round(raw_tokens / raw_s, 1),
                     "ratio": round((pipe_tokens / pipe_s) / (raw_tokens / raw_s), 3),
                     "model": backend.model, "dtype": backend.dtype, "load_s": round(load_s, 1),
                     "torch_threads": torch.get_num_threads()})
    return rows


def _labeling_workload(backend, problems: list[dict], n: int, k: int, temperature: float) -> dict:
    """Rollouts then Monte Carlo continuations of every step prefix, as the default job asks for them."""
    from prm_data.labelers.mc_value import MCValueConfig, label_mc_value
    from prm_data.rollouts import RolloutConfig, generate_rollouts
    from prm_data.trees.sampling import Completer, CompleterConfig

    stop = ("\nProblem:", "\n\n\n", "Now solve")
    rollout_cfg = RolloutConfig(n=n, temperature=temperature, top_p=0.9, max_tokens=72, prompt_version="solve.v2",
                                stop=stop)
    completer_cfg = CompleterConfig(prompt_version="solve.v2", temperature=temperature, top_p=0.9, max_tokens=48,
                                    stop=stop)
    backend.clear_prefix_cache()
    t0 = time.perf_counter()
    with LLMClient(backend) as client:
        batch = generate_rollouts(problems, client, rollout_cfg, "bench")
        completer = Completer(client, cfg=completer_cfg, run_id="bench")
        label_mc_value(batch.for_labeling(), completer, MCValueConfig(k=k))
        usage = client.stats.total
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 2), "completion_tokens": usage.completion_tokens,
            "tok_s": round(usage.completion_tokens / wall, 2), **backend.prefix_stats.as_dict(),
            "answers": [r["text"] for r in batch.rollouts] + [c["text"] for c in completer.completion_rows]}


def prefix_reuse(model: str | None, problems: int, n: int, k: int) -> list[dict]:
    """The same labeling workload without and with prompt-prefix reuse, greedy and seeded-sampled."""
    from prm_data.llm.local_backend import LocalBackend
    from prm_data.sources import load_problems

    rows = load_problems(f"bank:{problems}:1-3:7:+-:12", run_id="bench")
    plain = LocalBackend(model_path=model, max_batch_size=16, prefix_cache_mb=0)
    reuse = LocalBackend(model_path=model, max_batch_size=16, prefix_cache_mb=512)
    out = []
    for temperature in (0.0, 0.5):
        base = _labeling_workload(plain, rows, 1 if temperature == 0 else n, k, temperature)
        new = _labeling_workload(reuse, rows, 1 if temperature == 0 else n, k, temperature)
        same = sum(a == b for a, b in zip(base["answers"], new["answers"]))
        out.append({"model": plain.model, "temperature": temperature, "problems": problems,
                    "answers": len(base["answers"]), "same_answers": same,
                    "all_same": same == len(base["answers"]) == len(new["answers"]),
                    "without": {k_: v for k_, v in base.items() if k_ != "answers"},
                    "with": {k_: v for k_, v in new.items() if k_ != "answers"},
                    "prefill_ratio": round(new["prefill_tokens_computed"] / base["prefill_tokens_computed"], 4),
                    "speedup": round(base["wall_s"] / new["wall_s"], 3)})
        print(json.dumps(out[-1]), flush=True)  # each row as it is measured: the whole section takes minutes
    return out


def run(quick: bool = False, only: str | None = None, model: str | None = None) -> dict:
    started = time.time()
    load = os.getloadavg()
    if only == "prefix_reuse":
        openai_runs, local_runs = [], []
    else:
        openai_runs = [openai_vs_capacity(8, 0.1, 200 if quick else 800)]
        if not quick:
            openai_runs.append(openai_vs_capacity(32, 0.1, 1600))
            openai_runs.append(openai_vs_capacity(8, 0.1, 800, continuation="continue_final_message"))
        local_runs = local_vs_raw((1, 8), 24 if quick else 64)
    reuse_runs = prefix_reuse(model, 1 if quick else 4, 4, 2 if quick else 4)
    out = {
        "benchmark": "llm_throughput", "quick": quick,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_at_start": load},
        "openai_vs_capacity": openai_runs,
        "local_vs_raw": local_runs,
        "prefix_reuse": reuse_runs,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "goal": {"openai_ratio_min": 0.9},
        "openai_goal_met": all(r["ratio"] >= 0.9 for r in openai_runs) if openai_runs else None,
        "elapsed_s": round(time.time() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "llm_throughput_prefix_reuse.json" if only == "prefix_reuse" else "llm_throughput.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2) + "\n")
    return out


def print_table(out: dict) -> None:
    print(f"load average at start: {out['machine']['load_avg_at_start']}  ({out['machine']['cpus']} CPUs)")
    print("\nopenai backend vs server capacity (C / latency)")
    print(f"{'C':>4} {'lat s':>6} {'mode':>24} {'reqs':>5} {'capacity/s':>11} {'achieved/s':>11} {'ratio':>6} {'fail':>5}")
    for r in out["openai_vs_capacity"]:
        print(f"{r['slots']:>4} {r['latency_s']:>6} {r['continuation']:>24} {r['requests']:>5} "
              f"{r['capacity_rps']:>11} {r['achieved_rps']:>11} {r['ratio']:>6} {r['failed']:>5}")
    print("\nlocal backend (pipeline) vs raw model.generate, same process and model")
    print(f"{'batch':>5} {'max_tok':>7} {'pipeline tok/s':>15} {'raw tok/s':>10} {'ratio':>6} {'threads':>7}")
    for r in out["local_vs_raw"]:
        print(f"{r['batch']:>5} {r['max_tokens']:>7} {r['pipeline_tok_s']:>15} {r['raw_tok_s']:>10} "
              f"{r['ratio']:>6} {r['torch_threads']:>7}")
    print("\nprompt-prefix reuse on the local backend: the same labeling workload without / with reuse")
    print(f"{'temp':>4} {'answers':>7} {'same':>5} {'prefill tok':>17} {'ratio':>6} {'wall s':>13} "
          f"{'tok/s':>13} {'speedup':>7}")
    for r in out["prefix_reuse"]:
        a, b = r["without"], r["with"]
        print(f"{r['temperature']:>4} {r['answers']:>7} {r['same_answers']:>5} "
              f"{a['prefill_tokens_computed']:>8}/{b['prefill_tokens_computed']:<8} {r['prefill_ratio']:>6} "
              f"{a['wall_s']:>6}/{b['wall_s']:<6} {a['tok_s']:>6}/{b['tok_s']:<6} {r['speedup']:>7}")
    print(f"\npeak RSS: {out['peak_rss_mb']} MB; openai goal (>= 0.9 of capacity) met: {out['openai_goal_met']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and tokens (about a minute)")
    parser.add_argument("--only", choices=["prefix_reuse"], help="run only this section")
    parser.add_argument("--model", help="prefix_reuse: a bundled model name or path (default: the default model)")
    args = parser.parse_args()
    print_table(run(quick=args.quick, only=args.only, model=args.model))
