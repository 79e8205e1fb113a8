"""The object-store warehouse's guarantees, on a real S3-compatible server on 127.0.0.1 (moto's,
tests/s3_support.py): the commit protocol (prm_data/storage/commit.py), leases for run claims
(lease.py) and the request cache's per-worker stores (issue 20; docs/warehouse.md, "Object storage").
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time

import boto3
import pytest

from prm_data.storage import commit
from prm_data.warehouse import Warehouse
from prm_data.warehouses import open_warehouse
from s3_support import bucket_objects, s3_endpoint, s3_root  # noqa: F401 (fixtures)

SHARD_ROWS = 300
QUESTION = "How many marbles are left after all of the trades? " * 4
COUNT_SQL = "SELECT count(*), count(DISTINCT problem_id), coalesce(sum(length(question)), 0) FROM problems"


def shard_rows(shard: int, version: int = 0) -> list[dict]:
    return [{"problem_id": f"p{shard}-{i}", "run_id": "writer", "source": "test", "question": QUESTION,
             "answer": f"{version}", "reference_solution": "Step 1: count.\n\n" * 20} for i in range(SHARD_ROWS)]


def shard_keys(s3_endpoint, root: str, table: str, run_id: str, shard: str) -> list[str]:
    prefix = f"{root.split('/', 3)[3]}/tables/{table}/run_id={run_id}/{shard}~"
    return sorted(k for k in bucket_objects(s3_endpoint, root) if k.startswith(prefix))


def run_script(body: str, *args: str) -> subprocess.Popen:
    """A separate Python process (what another worker is) running `body`; it reaches the server
    through the environment the fixture set, as any worker would."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(body), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# ----------------------------------------------------------------------------- commit protocol
def reader(root: str, stop, ready, observed, results) -> None:
    """In another process: count rows over and over, through the views and a read-only query."""
    from prm_data.sql_guard import run_read_only

    warehouse = open_warehouse(root)
    counts, errors = [], []
    ready.set()
    rounds = 0
    while not stop.is_set():
        rounds += 1  # prm-data query's path (a new views file, nothing cached) every third round: it is slow
        for read in ("views", "query") if rounds % 3 == 1 else ("views",):
            try:
                if read == "views":
                    row = warehouse.query(COUNT_SQL).to_pylist()[0].values()
                else:
                    row = run_read_only(warehouse, COUNT_SQL).to_pylist()[0].values()
                counts.append(tuple(row))
            except Exception as exc:  # the test asserts this list is empty
                errors.append(f"{type(exc).__name__}: {exc}")
            observed.value += 1
    results.put({"counts": counts, "errors": errors})


def test_a_reader_during_writes_sees_only_whole_committed_shards(s3_root, s3_endpoint):
    """Appends and replacements under a reader in another process; beside them, objects that look
    like shard data but have no marker (an upload killed before its marker, and a truncated one):
    every count the reader sees is whole shards of committed versions only."""
    warehouse = open_warehouse(s3_root)
    bucket, prefix = s3_root.split("://")[1].split("/", 1)
    folder = f"{prefix}/tables/problems/run_id=writer"
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    from prm_data.schema import to_table
    from prm_data.storage.object_warehouse import _parquet_bytes

    whole = _parquet_bytes(to_table("problems", shard_rows(999)))
    for name, body in (("orphan", whole), ("torn", whole[: len(whole) // 2])):
        key = f"{folder}/{name}~{time.time_ns():019d}abcd~{'0' * 32}.parquet"
        client.put_object(Bucket=bucket, Key=key, Body=body)

    ctx = mp.get_context("spawn")
    stop, ready, observed, results = ctx.Event(), ctx.Event(), ctx.Value("i", 0), ctx.Queue()
    proc = ctx.Process(target=reader, args=(s3_root, stop, ready, observed, results))
    proc.start()
    try:
        assert ready.wait(60), "reader process did not start"
        shard = 0
        while shard < 5 or (observed.value < 5 and shard < 100):
            warehouse.write_shard("problems", shard_rows(shard), run_id="writer", shard=f"s{shard:04d}")
            if shard % 3 == 0:  # replace an earlier shard: same rows, a new version
                warehouse.write_shard("problems", shard_rows(shard // 2, version=shard), run_id="writer",
                                      shard=f"s{shard // 2:04d}")
            shard += 1
        final = observed.value
        deadline = time.monotonic() + 30
        while observed.value < final + 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        out = results.get(timeout=60)
    finally:
        stop.set()
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
    assert proc.exitcode == 0
    counts, errors = out["counts"], out["errors"]
    assert errors == []
    assert len(counts) >= 4
    for n, distinct, chars in counts:
        assert n % SHARD_ROWS == 0, f"reader saw {n} rows: a partial or uncommitted shard"
        assert distinct == n, "a shard was counted twice (two versions visible)"
        assert chars == n * len(QUESTION)
    assert len({c[0] for c in counts}) >= 2, "reads did not interleave with writes"
    assert counts[-1][0] == shard * SHARD_ROWS
    assert warehouse.scalar("SELECT count(*) FROM problems") == shard * SHARD_ROWS


KILLED_WRITER = """
import os, signal, sys
from prm_data.warehouses import open_warehouse
from prm_data.storage import commit
sys.path.insert(0, {tests!r})
from test_object_store import shard_rows

wh = open_warehouse(sys.argv[1])
mode = sys.argv[2]
if mode == "before-marker":
    wh.write_shard("problems", shard_rows(0, version=1), run_id="writer", shard="s")
    put = wh.fs.pipe_file
    def put_then_die(key, data, **kw):
        if key.endswith(".commit"):
            os.kill(os.getpid(), signal.SIGKILL)  # killed after its data upload, before its marker
        return put(key, data, **kw)
    wh.fs.pipe_file = put_then_die
    wh.write_shard("problems", shard_rows(0, version=2), run_id="writer", shard="s")
else:  # "loop": write shards 0.. until killed
    print("started", flush=True)
    for n in range(int(sys.argv[3])):
        wh.write_shard("problems", shard_rows(n), run_id="writer", shard=f"s{{n:04d}}")
"""


def test_a_writer_killed_between_its_upload_and_its_marker_leaves_nothing_visible(s3_root, s3_endpoint):
    tests = os.path.dirname(__file__)
    proc = run_script(KILLED_WRITER.format(tests=tests), s3_root, "before-marker")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    warehouse = open_warehouse(s3_root)
    keys = shard_keys(s3_endpoint, s3_root, "problems", "writer", "s")
    assert [k.rsplit(".", 1)[1] for k in keys].count("parquet") == 2  # the killed upload is there...
    assert warehouse.rows("SELECT DISTINCT answer FROM problems") == [{"answer": "1"}]  # ...and not visible
    # the rerun writes the shard again and nothing trips it; one copy once the grace has passed
    warehouse.write_shard("problems", shard_rows(0, version=2), run_id="writer", shard="s")
    assert warehouse.rows("SELECT DISTINCT answer FROM problems") == [{"answer": "2"}]
    assert warehouse.scalar("SELECT count(*) FROM problems") == SHARD_ROWS
    folder = f"{s3_root.split('://')[1]}/tables/problems/run_id=writer"
    kinds = [k.rsplit(".", 1)[1] for k in shard_keys(s3_endpoint, s3_root, "problems", "writer", "s")]
    assert sorted(kinds) == ["commit"] + ["parquet"] * 3  # v1 (superseded) and the killed upload, in their grace
    commit.clean_up(warehouse.fs, folder, "s", grace_s=0)
    assert [k.rsplit(".", 1)[1] for k in shard_keys(s3_endpoint, s3_root, "problems", "writer", "s")] == \
        ["commit", "parquet"]


def test_kill_9_at_a_random_moment_of_many_writes_then_rerun_gives_every_shard_once(s3_root):
    tests = os.path.dirname(__file__)
    proc = run_script(KILLED_WRITER.format(tests=tests), s3_root, "loop", "100000")  # writes until killed
    assert proc.stdout.readline().strip() == "started"
    warehouse = open_warehouse(s3_root)
    deadline = time.monotonic() + 60
    while len(warehouse.run_files("problems", "writer")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.05 * (os.getpid() % 7))  # not always at the same point of a write
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the writer was not killed mid-way"
    seen = warehouse.run_files("problems", "writer")
    assert len(seen) >= 3
    assert warehouse.scalar("SELECT count(*) FROM problems") == len(seen) * SHARD_ROWS  # whole shards only
    n = len(seen) + 2  # the shards it finished, the one it was writing, and one it never began
    for i in range(n):  # the rerun: the same writes, the same names
        warehouse.write_shard("problems", shard_rows(i), run_id="writer", shard=f"s{i:04d}")
    assert len(warehouse.run_files("problems", "writer")) == n
    assert warehouse.scalar("SELECT count(*) FROM problems") == n * SHARD_ROWS
    assert warehouse.scalar("SELECT count(DISTINCT problem_id) FROM problems") == n * SHARD_ROWS


SAME_SHARD_WRITER = """
import sys
from prm_data.warehouses import open_warehouse
wh = open_warehouse(sys.argv[1])
for i in range(5):
    rows = [{"problem_id": f"p{j}", "run_id": "writer", "source": "test", "question": "q",
             "answer": f"{sys.argv[2]}-{i}", "reference_solution": "s"} for j in range(50)]
    wh.write_shard("problems", rows, run_id="writer", shard="same")
"""


def test_two_workers_writing_the_same_shard_end_with_one_copy(s3_root, s3_endpoint):
    procs = [run_script(SAME_SHARD_WRITER, s3_root, name) for name in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    keys = shard_keys(s3_endpoint, s3_root, "problems", "writer", "same")
    markers = [k for k in keys if k.endswith(".commit")]
    assert len(markers) == 1, keys  # one visible version at once
    assert markers[0].replace(".commit", ".parquet") in keys
    warehouse = open_warehouse(s3_root)
    rows = warehouse.rows("SELECT DISTINCT answer FROM problems")
    assert len(rows) == 1 and rows[0]["answer"] in ("a-4", "b-4")
    # superseded versions stay readable for their grace (a query may have listed them), then go
    warehouse.sync_views()  # the end-of-run clean-up: still within the grace, nothing of the current goes
    assert markers[0].replace(".commit", ".parquet") in shard_keys(s3_endpoint, s3_root, "problems", "writer", "same")
    commit.clean_up(warehouse.fs, f"{s3_root.split('://')[1]}/tables/problems/run_id=writer", "same", grace_s=0)
    assert shard_keys(s3_endpoint, s3_root, "problems", "writer", "same") == sorted(
        [markers[0], markers[0].replace(".commit", ".parquet")])


# ----------------------------------------------------------------------------- run claims
CLAIMER = """
import sys, time
from prm_data.config import RunConfig
from prm_data.pipeline.runs import claim_run
claim_run(RunConfig(warehouse=sys.argv[1]), "night-1")
print("claimed", flush=True)
time.sleep(120)
"""


def test_a_run_claim_holds_across_workers_and_a_killed_holder_is_taken_over(s3_root):
    from prm_data.config import RunConfig
    from prm_data.pipeline.runs import RunInProgress, claim_run, release_run

    holder = run_script(CLAIMER, s3_root)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        config = RunConfig(warehouse=s3_root)
        with pytest.raises(RunInProgress, match=f"pid {holder.pid}"):
            claim_run(config, "night-1")
        holder.send_signal(signal.SIGKILL)  # no release: its lease stays in the bucket
        holder.wait(30)
        claim_run(config, "night-1")  # its host is this one and its pid is gone: taken over at once
        release_run(config, "night-1")
    finally:
        holder.kill()


def test_a_lease_of_another_host_is_respected_until_it_expires(s3_root, s3_endpoint):
    import json

    from prm_data.storage.lease import Lease

    warehouse = open_warehouse(s3_root)
    bucket, prefix = s3_root.split("://")[1].split("/", 1)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    key = f"{prefix}/locks/ingest-problems.lease"
    body = {"host": "another-machine", "pid": 1, "token": "t", "since": "now", "expires": time.time() + 60}
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())
    lease = Lease(warehouse.fs, f"{bucket}/{key}")
    assert not lease.acquire(wait_s=0.5)
    assert "another-machine" in lease.holder()
    body["expires"] = time.time() - 1  # its holder stopped renewing
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())
    assert lease.acquire()
    assert json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())["pid"] == os.getpid()
    lease.release()
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix=key)


# ----------------------------------------------------------------------------- request cache
def test_each_worker_keeps_its_own_cache_store_and_a_new_worker_adopts_every_exported_answer(
        s3_root, tmp_path, monkeypatch):
    from prm_data.llm.cache import RequestCache
    from prm_data.llm.types import Sample

    warehouse = open_warehouse(s3_root)
    for worker, key in (("a", "k-a"), ("b", "k-b")):
        monkeypatch.setenv("PRM_DATA_LOCAL_STATE", str(tmp_path / worker))
        wh = open_warehouse(s3_root)
        assert str(wh.state_dir).startswith(str(tmp_path / worker))
        with RequestCache(wh, "run-1") as cache:
            cache.put(key, Sample(text=f"answer {worker}", finish_reason="stop", prompt_tokens=3, completion_tokens=4,
                                 latency_s=0.1, request_key=key), "sim", "m")
    shards = sorted(p.stem for p in warehouse.run_files("llm_cache", "run-1"))
    assert len(shards) == 2 and shards[0] != shards[1] and all(s.startswith("s") for s in shards)
    assert warehouse.scalar("SELECT count(*) FROM llm_cache") == 2
    monkeypatch.setenv("PRM_DATA_LOCAL_STATE", str(tmp_path / "c"))
    cache = RequestCache(open_warehouse(s3_root), "run-2")
    assert cache.get("k-a").text == "answer a" and cache.get("k-b").text == "answer b"
    assert cache.get("k-a").cached and cache.hits == 3 and cache.misses == 0
    assert sorted(p.parent.parent.name for p in tmp_path.glob("*/*/llm_cache.sqlite")) == ["a", "b", "c"]


def test_a_written_shards_url_survives_pickling_as_task_results_are(s3_root):
    import pickle

    ref = open_warehouse(s3_root).write_shard("problems", shard_rows(0)[:2], run_id="writer", shard="s")
    back = pickle.loads(pickle.dumps(ref))
    assert (back, back.stem, back.name, back.parent.name) == (ref, "s", "s.parquet", "run_id=writer")
    assert back.startswith(s3_root + "/tables/problems/run_id=writer/s~")


def test_a_held_lease_is_renewed_so_it_never_expires_under_its_holder(s3_root):
    from prm_data.storage.lease import Lease

    warehouse = open_warehouse(s3_root)
    key = f"{s3_root.split('://')[1]}/locks/renewed.lease"
    holder = Lease(warehouse.fs, key, ttl_s=0.9)
    assert holder.acquire()
    try:
        time.sleep(2.0)  # over twice its TTL: without renewal another worker could take it over
        other = Lease(warehouse.fs, key, ttl_s=0.9)  # its holder's pid is alive: only expiry could free it
        assert not other.acquire(wait_s=0.3)
        assert not holder.lost
    finally:
        holder.release()
    assert not warehouse.fs.exists(key)


def test_warehouses_unpickle_as_what_they_were_whatever_the_environment_names(s3_root, tmp_path, monkeypatch):
    import pickle

    from prm_data.run_warehouse import for_run

    local, remote = Warehouse(tmp_path / "wh"), for_run(open_warehouse(s3_root), "r1")
    monkeypatch.setenv("PRM_DATA_WAREHOUSE", s3_root)  # a worker whose default is the bucket
    back_local, back_remote = pickle.loads(pickle.dumps(local)), pickle.loads(pickle.dumps(remote))
    assert type(back_local) is Warehouse and back_local.root == local.root
    assert type(back_remote).__name__ == "ObjectWarehouse" and (back_remote.root, back_remote.run_id) == (s3_root, "r1")
