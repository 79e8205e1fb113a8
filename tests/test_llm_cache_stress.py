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
import os
import queue
import threading
import time

import pytest

from prm_data.llm.cache import RequestCache
from prm_data.llm.types import Sample
from prm_data.warehouse import Warehouse

PROCESSES, THREADS, FLUSHERS, PUTS = 4, 6, 2, 100
REPETITIONS = int(os.environ.get("PRM_DATA_STRESS_REPETITIONS", "6"))  # CI: 6; raise it to hunt a rare race
OPENERS, OPEN_CYCLES = 6, 40


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


def collect(results, procs, timeout_s: float = 300.0):
    """The next worker's acknowledged keys; fails at once (not after the timeout) when a worker died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return results.get(timeout=1.0)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"a worker died (exit codes {dead}); its traceback is in the captured stderr"
    raise AssertionError(f"no worker reported within {timeout_s:.0f} s")


def open_at_once(root: str, barrier, results) -> None:
    """Open the store, put, close, again and again, while the other processes do the same."""
    barrier.wait()
    try:
        for cycle in range(OPEN_CYCLES):
            cache = RequestCache(Warehouse(root), run_id="openers", fsync=False)
            key = f"{os.getpid()}-{cycle}"
            cache.put(key, answer(key), backend="sim", model="m")
            cache.close()
        results.put("ok")
    except Exception as exc:  # reported, not raised: the parent names the error
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("repetition", range(3))
def test_processes_opening_the_store_while_others_create_and_write_it_all_succeed(tmp_path, repetition):
    """Opening the store while others create it, write and open it once gave "database is locked" (CI)."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(OPENERS), ctx.Queue()
    procs = [ctx.Process(target=open_at_once, args=(str(tmp_path), barrier, results)) for _ in range(OPENERS)]
    for p in procs:
        p.start()
    outcomes = [collect(results, procs, timeout_s=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert outcomes == ["ok"] * OPENERS


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
        acknowledged.update(collect(results, procs))
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
