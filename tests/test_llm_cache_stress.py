"""No answer the cache acknowledged is ever lost, whatever threads and processes do at once.

Several processes (spawned: they share nothing but the warehouse folder), each with
several threads, put answers through the public API while two threads of each process
flush over and over in between. Every key whose `put` returned is acknowledged; at
the end every acknowledged key must be in the `llm_cache` table (after one last
flush) and be served by a cache opened afresh. Repeated, because a race shows only
in some interleavings.
"""

from __future__ import annotations

import multiprocessing as mp
import threading

import pytest

from prm_data.llm.cache import RequestCache
from prm_data.llm.types import Sample
from prm_data.warehouse import Warehouse

PROCESSES, THREADS, FLUSHERS, PUTS = 4, 6, 2, 100
REPETITIONS = 20


def answer(key: str) -> Sample:
    return Sample(text=f"answer of {key}", finish_reason="stop", prompt_tokens=3, completion_tokens=5,
                  latency_s=0.01, request_key=key)


def worker(root: str, process: int, results) -> None:
    """Put PUTS answers from each of THREADS threads while FLUSHERS other threads keep flushing."""
    cache = RequestCache(Warehouse(root), run_id=f"stress{process}", fsync=False)
    acknowledged: list[str] = []
    ack_lock = threading.Lock()
    done = threading.Event()

    def put_all(thread: int) -> None:
        for i in range(PUTS):
            key = f"p{process}-t{thread}-{i}"
            cache.put(key, answer(key), backend="sim", model="m")
            with ack_lock:
                acknowledged.append(key)

    def flush_until_done() -> None:
        while not done.is_set():
            cache.flush()

    flushers = [threading.Thread(target=flush_until_done) for _ in range(FLUSHERS)]
    for t in flushers:
        t.start()
    threads = [threading.Thread(target=put_all, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for t in flushers:
        t.join()
    results.put(acknowledged)


@pytest.mark.slow
@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_threads_and_processes_putting_and_flushing_lose_no_acknowledged_answer(tmp_path, repetition):
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(str(tmp_path), p, results)) for p in range(PROCESSES)]
    for p in procs:
        p.start()
    acknowledged = set()
    for _ in procs:
        acknowledged.update(results.get(timeout=300))
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(acknowledged) == PROCESSES * THREADS * PUTS

    wh = Warehouse(tmp_path)
    fresh = RequestCache(wh, run_id="checker")
    served = {k for k in acknowledged if fresh.get(k) is not None}
    fresh.flush()
    in_table = {r["request_key"] for r in wh.rows("SELECT request_key FROM llm_cache")}
    assert acknowledged - served == set(), f"{len(acknowledged - served)} acknowledged answers not served"
    assert acknowledged - in_table == set(), f"{len(acknowledged - in_table)} acknowledged answers not in llm_cache"
    assert wh.scalar("SELECT count(*) FROM llm_cache") == len(acknowledged)  # each answer once
