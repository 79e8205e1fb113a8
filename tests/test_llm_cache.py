"""The request cache keeps every answer paid for, across processes, crashes and reruns."""

from __future__ import annotations

import json
import time

import pytest

from prm_data.llm.cache import JOURNAL_DIR, RequestCache
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


def test_a_new_process_sees_answers_from_the_journal_before_any_flush(tmp_path):
    wh = Warehouse(tmp_path)
    first = RequestCache(wh, "run1")
    first.put("k1", sample("k1"), backend="sim", model="m")
    journal = first.journal_path
    assert journal.parent == tmp_path / JOURNAL_DIR and journal.read_text().count("\n") == 1
    second = RequestCache(wh, "run2")  # as a rerun after a crash would open it
    assert second.get("k1").text == "Step 1: 2 + 3 = 5."


def test_flush_compacts_the_journal_into_an_llm_cache_shard_and_removes_it(tmp_path):
    wh = Warehouse(tmp_path)
    cache = RequestCache(wh, "run1")
    for i in range(5):
        cache.put(f"k{i}", sample(f"k{i}", text=f"answer {i}"), backend="sim", model="m")
    journal = cache.journal_path
    shards = cache.flush()
    assert len(shards) == 1 and not journal.exists()
    assert shards[0].parent.name == "run_id=run1"
    rows = wh.rows("SELECT request_key, backend, model, text, metadata FROM llm_cache ORDER BY request_key")
    assert [r["request_key"] for r in rows] == [f"k{i}" for i in range(5)]
    assert rows[3]["text"] == "answer 3" and rows[3]["backend"] == "sim"
    assert json.loads(rows[0]["metadata"]) == {"true_first_error": -1}
    cache.put("k9", sample("k9"), backend="sim", model="m")  # still usable: a fresh journal
    assert cache.journal_path != journal and RequestCache(wh, "r").get("k9") is not None


def test_a_torn_last_line_is_skipped_and_the_rest_is_kept(tmp_path):
    wh = Warehouse(tmp_path)
    cache = RequestCache(wh, "run1")
    cache.put("k1", sample("k1"), backend="sim", model="m")
    cache.put("k2", sample("k2"), backend="sim", model="m")
    with open(cache.journal_path, "ab") as fh:  # a process killed in the middle of a write
        fh.write(b'{"request_key": "k3", "backend": "sim", "text": "half an ans')
    reopened = RequestCache(wh, "run2")
    assert reopened.get("k1") is not None and reopened.get("k2") is not None
    assert reopened.get("k3") is None and reopened.torn_lines == 1


def test_an_orphaned_journal_is_adopted_by_the_next_flush_but_a_living_one_is_not(tmp_path):
    wh = Warehouse(tmp_path)
    orphan_dir = tmp_path / JOURNAL_DIR
    orphan_dir.mkdir(exist_ok=True)
    row = {"request_key": "dead1", "backend": "sim", "model": "m", "text": "t", "finish_reason": "stop",
           "prompt_tokens": 1, "completion_tokens": 1, "latency_s": 0.0, "metadata": "{}",
           "created_at": "2025-01-01T00:00:00+00:00"}
    (orphan_dir / "deadrun__999999_abc.jsonl").write_text(json.dumps(row) + "\n")  # nobody holds its lock
    living = RequestCache(wh, "live")
    living.put("alive1", sample("alive1"), backend="sim", model="m")
    other = RequestCache(wh, "other")
    assert other.get("dead1") is not None and other.get("alive1") is not None
    shards = other.flush()
    assert [p.parent.name for p in shards] == ["run_id=deadrun"]  # adopted under its own run
    assert {r["request_key"] for r in wh.rows("SELECT request_key FROM llm_cache")} == {"dead1"}
    assert living.journal_path.exists()
    living.close()
    assert {r["request_key"] for r in wh.rows("SELECT request_key FROM llm_cache")} == {"dead1", "alive1"}
    assert not list(orphan_dir.glob("*.jsonl"))


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
def test_lookups_stay_fast_with_100k_entries(tmp_path):
    wh = Warehouse(tmp_path)
    writer = RequestCache(wh, "big", fsync=False)
    for i in range(100_000):
        writer.put(f"key{i:06d}", sample(f"key{i:06d}", text=f"answer {i}"), backend="sim", model="m")
    writer.flush()
    t0 = time.perf_counter()
    cache = RequestCache(wh, "reader")
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = sum(cache.get(f"key{i:06d}") is not None for i in range(0, 100_000, 7))
    lookup_s = time.perf_counter() - t0
    assert len(cache) == 100_000 and found == len(range(0, 100_000, 7))
    assert load_s < 20 and lookup_s / found < 1e-3, (load_s, lookup_s)


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


def test_a_forked_child_writes_a_journal_of_its_own(tmp_path):
    import os

    wh = Warehouse(tmp_path)
    cache = RequestCache(wh, "parent")
    cache.put("from-parent", sample("from-parent"), backend="sim", model="m")
    pid = os.fork()
    if pid == 0:  # the child: put one answer and leave at once
        try:
            cache.put("from-child", sample("from-child"), backend="sim", model="m")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    journals = sorted((tmp_path / JOURNAL_DIR).glob("*.jsonl"))
    assert len(journals) == 2
    contents = {p.name: p.read_text() for p in journals}
    assert sum("from-child" in c for c in contents.values()) == 1
    assert "from-child" not in cache.journal_path.read_text()
    shards = cache.flush()  # its own journal, and the child's (dead, so adopted)
    assert len(shards) == 2
    assert {r["request_key"] for r in wh.rows("SELECT request_key FROM llm_cache")} == {"from-parent", "from-child"}
