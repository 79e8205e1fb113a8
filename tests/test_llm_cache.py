"""The request cache keeps every answer paid for, across processes, crashes and reruns."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from prm_data.llm.cache import LEGACY_JOURNAL_DIR, STORE_NAME, RequestCache, paid_by_run
from prm_data.llm.client import LLMClient
from prm_data.llm.sim import SimBackend
from prm_data.llm.types import GenerationRequest, Message, Sample
from prm_data.sources.bank import generate_bank
from prm_data.warehouse import Warehouse


def sample(key: str, text: str = "Step 1: 2 + 3 = 5.", meta: dict | None = None) -> Sample:
    return Sample(text=text, finish_reason="stop", prompt_tokens=11, completion_tokens=7, latency_s=0.25,
                  request_key=key, metadata=meta or {"true_first_error": -1})


def test_an_answer_put_is_returned_marked_cached_with_every_field(tmp_path):
    cache = RequestCache(Warehouse(tmp_path), "run1")
    assert cache.get("k1") is None
    cache.put("k1", sample("k1", meta={"true_first_error": 2}), backend="sim", model="sim-policy")
    got = cache.get("k1")
    assert got == Sample(
        text="Step 1: 2 + 3 = 5.", finish_reason="stop", prompt_tokens=11, completion_tokens=7,
        latency_s=0.25, request_key="k1", cached=True, metadata={"true_first_error": 2})
    assert (cache.hits, cache.misses) == (1, 1)


def in_subprocess(root, body: str) -> subprocess.CompletedProcess:
    """Run `body` in a fresh Python process with `cache = RequestCache(Warehouse(root), "run1")` and `sample`."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_llm_cache import sample
        from prm_data.llm.cache import RequestCache
        from prm_data.warehouse import Warehouse
        cache = RequestCache(Warehouse({str(root)!r}), "run1")
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_another_process_sees_an_answer_at_once_before_any_flush(tmp_path):
    wh = Warehouse(tmp_path)
    reader = RequestCache(wh, "run2")  # opened first, as a long-lived process would be
    assert reader.get("k1") is None
    done = in_subprocess(tmp_path, 'cache.put("k1", sample("k1"), backend="sim", model="m")')
    assert done.returncode == 0, done.stderr
    assert reader.get("k1").text == "Step 1: 2 + 3 = 5." and "k1" in reader and len(reader) == 1


def test_flush_exports_new_answers_into_an_llm_cache_shard_once(tmp_path):
    wh = Warehouse(tmp_path)
    cache = RequestCache(wh, "run1")
    for i in range(5):
        cache.put(f"k{i}", sample(f"k{i}", text=f"answer {i}"), backend="sim", model="m")
    shards = cache.flush()
    assert len(shards) == 1 and shards[0].parent.name == "run_id=run1"
    rows = wh.rows("SELECT request_key, backend, model, text, metadata FROM llm_cache ORDER BY request_key")
    assert [r["request_key"] for r in rows] == [f"k{i}" for i in range(5)]
    assert rows[3]["text"] == "answer 3" and rows[3]["backend"] == "sim"
    assert json.loads(rows[0]["metadata"]) == {"true_first_error": -1}
    assert cache.flush() == []  # nothing new: nothing written
    cache.put("k9", sample("k9"), backend="sim", model="m")  # still usable
    other = RequestCache(wh, "run2")
    assert other.get("k9") is not None and len(other.flush()) == 1  # any process's answers are exported
    assert wh.scalar("SELECT count(*) FROM llm_cache") == 6 == wh.scalar("SELECT count(DISTINCT request_key) "
                                                                          "FROM llm_cache")


def test_a_process_killed_in_the_middle_of_a_write_loses_only_that_write(tmp_path):
    done = in_subprocess(tmp_path, f"""
        import os, signal, sqlite3
        cache.put("k1", sample("k1"), backend="sim", model="m")
        cache.put("k2", sample("k2"), backend="sim", model="m")
        con = sqlite3.connect({str(tmp_path / STORE_NAME)!r}, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")  # what a put does, cut before its commit
        con.execute("INSERT INTO answers (request_key, run_id, writer, backend, model, text, created_at) "
                    "VALUES ('k3', 'run1', 'w', 'sim', 'm', 'half an answer', 'now')")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert done.returncode == -signal.SIGKILL
    reopened = RequestCache(Warehouse(tmp_path), "run2")
    assert reopened.get("k1") is not None and reopened.get("k2") is not None
    assert reopened.get("k3") is None
    reopened.put("k4", sample("k4"), backend="sim", model="m")  # the store is not left locked or corrupt
    assert len(reopened) == 3
    assert sorted(p.parent.name for p in reopened.flush()) == ["run_id=run1", "run_id=run2"]  # by payer


def test_an_answer_this_run_paid_in_a_killed_process_is_charged_once_after_the_resume(tmp_path):
    done = in_subprocess(tmp_path, 'cache.put("k1", sample("k1"), backend="sim", model="m")')
    assert done.returncode == 0, done.stderr
    wh = Warehouse(tmp_path)
    resumed = RequestCache(wh, "run1")
    assert resumed.get("k1").cached is False  # its label must carry the cost, as without the crash
    assert resumed.get("k1").cached is True  # once only
    assert RequestCache(wh, "run2").get("k1").cached is True  # another run: a plain hit
    assert paid_by_run(wh, "run1") == {"requests": 1, "prompt_tokens": 11, "completion_tokens": 7}
    assert paid_by_run(wh, "run2") == {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}


def test_a_warehouse_of_the_journal_based_cache_is_imported_once_with_nothing_lost(tmp_path):
    wh = Warehouse(tmp_path)
    old = {"request_key": "old1", "backend": "sim", "model": "m", "text": "t", "finish_reason": "stop",
           "prompt_tokens": 1, "completion_tokens": 2, "latency_s": 0.0, "metadata": "{}"}
    from datetime import datetime, timezone

    wh.write_shard("llm_cache", [old | {"created_at": datetime(2025, 1, 1, tzinfo=timezone.utc)}],
                   run_id="oldrun", shard="oldrun__123_abcdefabcdef")  # compacted by the old version
    journals = tmp_path / LEGACY_JOURNAL_DIR
    journals.mkdir()
    dead = old | {"request_key": "dead1", "created_at": "2025-01-01T00:00:00+00:00"}
    (journals / "deadrun__999999_abcdefabcdef.jsonl").write_text(json.dumps(dead) + "\n" + '{"request_key": "to')
    cache = RequestCache(wh, "new")
    assert cache.get("old1") is not None and cache.get("dead1") is not None and len(cache) == 2
    assert not list(journals.glob("*.jsonl"))
    assert [p.parent.name for p in cache.flush()] == ["run_id=deadrun"]  # the journal's answer, under its run
    assert sorted(r["request_key"] for r in wh.rows("SELECT request_key FROM llm_cache")) == ["dead1", "old1"]
    assert paid_by_run(wh, "deadrun")["requests"] == 1 and paid_by_run(wh, "oldrun")["requests"] == 1
    assert len(RequestCache(wh, "again")) == 2  # imported once


def test_the_client_serves_a_rerun_from_the_cache_and_counts_hits_and_misses(tmp_path):
    wh = Warehouse(tmp_path)
    problems = generate_bank(4, seed=7)
    reqs = [GenerationRequest(messages=(Message("user", p.question),), n=3, purpose="rollout") for p in problems]
    first = LLMClient(SimBackend(), cache=RequestCache(wh, "r1"))
    texts = [r.texts for r in first.generate(reqs)]
    assert first.stats.total.cache_misses == 12 and first.stats.total.cache_hits == 0
    first.cache.flush()
    again = LLMClient(SimBackend(), cache=RequestCache(wh, "r2"))
    bigger = [GenerationRequest(messages=(Message("user", p.question),), n=4, purpose="rollout") for p in problems]
    results = again.generate(bigger)
    assert [r.texts[:3] for r in results] == texts  # the first three samples are the ones paid for
    total = again.stats.total
    assert (total.cache_hits, total.cache_misses, total.calls) == (12, 4, 4)
    assert all(s.cached for r in results for s in r.samples[:3]) and not any(r.samples[3].cached for r in results)


@pytest.mark.slow
def test_opening_the_cache_costs_the_same_with_100k_stored_answers_and_lookups_stay_fast(tmp_path):
    def open_seconds(wh) -> float:
        times = []
        for run in range(5):
            t0 = time.perf_counter()
            RequestCache(wh, f"reader{run}")
            times.append(time.perf_counter() - t0)
        return sorted(times)[2]

    empty_s = open_seconds(Warehouse(tmp_path / "empty"))
    wh = Warehouse(tmp_path / "big")
    writer = RequestCache(wh, "big", fsync=False)
    for i in range(100_000):
        writer.put(f"key{i:06d}", sample(f"key{i:06d}", text=f"answer {i}"), backend="sim", model="m")
    writer.flush()
    full_s = open_seconds(wh)
    cache = RequestCache(wh, "reader")
    t0 = time.perf_counter()
    found = sum(cache.get(f"key{i:06d}") is not None for i in range(0, 100_000, 7))
    lookup_s = time.perf_counter() - t0
    assert len(cache) == 100_000 and found == len(range(0, 100_000, 7))
    print(f"open: {empty_s * 1e3:.1f} ms empty, {full_s * 1e3:.1f} ms with 100k answers; "
          f"lookup {lookup_s / found * 1e6:.0f} us")
    assert full_s < max(3 * empty_s, 0.05), (empty_s, full_s)  # nothing is loaded on open
    assert lookup_s / found < 1e-3, lookup_s


def test_clients_of_one_run_share_one_cache_and_see_each_others_answers(tmp_path):
    from prm_data.llm.factory import BackendConfig, make_client

    wh = Warehouse(tmp_path)
    policy = make_client(BackendConfig(kind="sim"), wh, run_id="shared")
    completer = make_client(BackendConfig(kind="sim", concurrency=2), wh, run_id="shared")
    assert policy.cache is completer.cache
    req = GenerationRequest(messages=(Message("user", generate_bank(1, seed=2)[0].question),))
    [a] = policy.generate([req])
    [b] = completer.generate([req])
    assert b.samples[0].cached and b.texts == a.texts


def test_a_forked_child_stores_through_a_connection_of_its_own(tmp_path):
    wh = Warehouse(tmp_path)
    cache = RequestCache(wh, "parent")
    cache.put("from-parent", sample("from-parent"), backend="sim", model="m")
    pid = os.fork()
    if pid == 0:  # the child: put one answer and leave at once
        try:
            cache.put("from-child", sample("from-child"), backend="sim", model="m")
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert cache.get("from-child") is not None  # the parent sees it at once
    cache.put("after-fork", sample("after-fork"), backend="sim", model="m")  # the parent's connection still works
    assert len(cache.flush()) == 1
    assert {r["request_key"] for r in wh.rows("SELECT request_key FROM llm_cache")} == {
        "from-parent", "from-child", "after-fork"}
    with sqlite3.connect(tmp_path / STORE_NAME) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
