"""Does OmegaPRM's binary search keep a model server busy? Wall time vs (requests / server capacity).

Binary search is sequential within a problem (each estimate decides where the
next one goes), and at its cheapest settings (k = 4, early stop in chunks of
2) each step of a search asks for only a couple of completions. Run in
rounds (every pending ask of every problem in one batch, then wait for the
whole batch) the rounds shrink as searches finish and the server idles
between them. `drive` in trees/sampling.py can instead pipeline the searches
of different problems (they touch disjoint subtrees, so the labels are the
same): every ask goes out as soon as its search yields it, up to
`CompleterConfig.max_in_flight` at once.

Setup: the test server (prm_data/serve_sim.py) in its own process holds each
request `latency` seconds in one of `slots` slots, so its capacity is
slots / latency requests per second (benchmarks/llm_throughput.py measures
that the openai backend reaches >= 0.9 of it); the client is `LLMClient` +
`OpenAIBackend` over real HTTP with concurrency 2 x slots. The rollouts
(synthetic policy, error rate 0.3, 3-6 operations of + - *) are made in
process and not timed. Reported per setting and mode: HTTP requests (the
client's calls), wall time, the ideal time requests / capacity, and their
ratio (goal <= 1.25), with the labels of both modes compared for equality,
and, as the reference, the ratio of independent requests sent in one batch
through the same client (what the client reaches on this machine at all).
Capacity 8 slots x 1 s = 8 requests/s (a slow model server): slow enough that
the client's own CPU time on a shared 2-core machine is not what is measured
(at 40 requests/s and a load average of 25 even independent requests reached
only 1/2.7 of capacity).

Run: `python benchmarks/search_throughput.py [--quick]`; prints a table and
writes benchmarks/results/search_throughput.json. The machine's load average
at the start is recorded: on a loaded machine the client's own CPU time adds
to every ratio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

from prm_data.labelers.omega_prm import OmegaPRMConfig, label_omega_prm
from prm_data.labelers.sim_truth import sim_rollouts
from prm_data.llm.client import LLMClient
from prm_data.llm.openai_backend import OpenAIBackend
from prm_data.llm.retry import RetryPolicy
from prm_data.serve_sim import ServeSimConfig, SimServer
from prm_data.trees.sampling import Completer, CompleterConfig, ask_for

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {  # name -> OmegaPRM config (continue_search off: label the given rollouts only)
    "binary_search_k4_early_stop": OmegaPRMConfig(k=4, continue_search=False, early_stop=True),
    "binary_search_k8": OmegaPRMConfig(k=8, continue_search=False),
}
GOAL_RATIO = 1.25


def _serve(cfg: ServeSimConfig, ports) -> None:
    server = SimServer(cfg)
    ports.put(server.port)
    server.serve_forever()


def _label(url: str, rollouts, cfg: OmegaPRMConfig, slots: int, max_in_flight: int) -> dict:
    backend = OpenAIBackend("sim-policy", [url], api_key_env=None)
    with LLMClient(backend, concurrency=2 * slots, retry=RetryPolicy(timeout_s=60)) as client:
        completer = Completer(client, cfg=CompleterConfig(max_in_flight=max_in_flight))
        start = time.perf_counter()
        labels = label_omega_prm(rollouts, completer, cfg)
        wall = time.perf_counter() - start
        usage = client.stats.total
    return {"wall_s": wall, "requests": usage.calls + usage.failures + usage.retries,
            "failures": usage.failures, "labels": [(l.rollout_id, l.step_index, l.hard_label) for l in labels]}


def _plain_batch(url: str, rollouts, slots: int, count: int) -> dict:
    """`count` independent completion requests in one batch through the same client: what it reaches at all."""
    backend = OpenAIBackend("sim-policy", [url], api_key_env=None)
    with LLMClient(backend, concurrency=2 * slots, retry=RetryPolicy(timeout_s=60)) as client:
        completer = Completer(client, cfg=CompleterConfig(seed=99))
        asks = [ask_for(rollouts[i % len(rollouts)], 1, 1) for i in range(count)]
        start = time.perf_counter()
        completer.sample(asks, "plain")
        return {"wall_s": time.perf_counter() - start, "requests": client.stats.total.calls}


def measure(rollouts, slots: int, latency_s: float) -> dict:
    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(ServeSimConfig(latency_s=latency_s, max_concurrency=slots), ports),
                       daemon=True)
    proc.start()
    capacity = slots / latency_s
    out = {"slots": slots, "latency_s": latency_s, "capacity_rps": capacity, "settings": {}}
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=120)}/v1"
        plain = _plain_batch(url, rollouts, slots, count=int(10 * capacity))
        out["plain_batch"] = {"requests": plain["requests"], "wall_s": round(plain["wall_s"], 3),
                              "ratio": round(plain["wall_s"] / (plain["requests"] / capacity), 3)}
        for name, cfg in SETTINGS.items():
            row = {}
            for mode, window in (("rounds", 0), ("pipelined", 64)):
                got = _label(url, rollouts, cfg, slots, window)
                ideal = got["requests"] / capacity
                row[mode] = {"requests": got["requests"], "failures": got["failures"],
                             "wall_s": round(got["wall_s"], 3), "ideal_s": round(ideal, 3),
                             "ratio": round(got["wall_s"] / ideal, 3), "labels": got.pop("labels")}
            row["same_labels"] = row["rounds"].pop("labels") == row["pipelined"].pop("labels")
            row["goal_met"] = row["pipelined"]["ratio"] <= GOAL_RATIO
            out["settings"][name] = row
    finally:
        proc.terminate()
        proc.join(timeout=10)
    return out


def run(quick: bool = False) -> dict:
    load = os.getloadavg()
    problems = 8 if quick else 16
    rollouts = [r.as_rollout_steps() for r in sim_rollouts(problems, per_problem=8, error_rate=0.3, seed=21,
                                                           difficulty=(3, 6), ops="+-*")]
    started = time.perf_counter()
    result = {"benchmark": "search_throughput", "quick": quick, "problems": problems,
              "rollouts": len(rollouts), "wrong_rollouts": sum(not r.is_correct for r in rollouts),
              "load_avg_at_start": load, "goal_ratio_max": GOAL_RATIO,
              "server": measure(rollouts, slots=8, latency_s=1.0)}
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_table(result: dict) -> None:
    s = result["server"]
    print(f"{result['rollouts']} rollouts ({result['wrong_rollouts']} wrong) of {result['problems']} problems; "
          f"server {s['slots']} slots x {s['latency_s']} s = {s['capacity_rps']:.0f} req/s; "
          f"load average at start {result['load_avg_at_start']}")
    p = s["plain_batch"]
    print(f"reference: {p['requests']} independent requests in one batch: {p['wall_s']:.2f} s, "
          f"ratio {p['ratio']:.2f} (what this client reaches on this machine)")
    print(f"{'setting':30s} {'mode':10s} {'requests':>8s} {'wall s':>7s} {'ideal s':>8s} {'ratio':>6s}")
    for name, row in s["settings"].items():
        for mode in ("rounds", "pipelined"):
            m = row[mode]
            print(f"{name:30s} {mode:10s} {m['requests']:8d} {m['wall_s']:7.2f} {m['ideal_s']:8.2f} {m['ratio']:6.2f}")
        print(f"{'':30s} same labels: {row['same_labels']}; goal (pipelined <= {GOAL_RATIO}x): {row['goal_met']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 problems instead of 16")
    print_table(run(quick=parser.parse_args().quick))
