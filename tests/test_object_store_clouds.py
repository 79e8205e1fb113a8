"""gs:// and az:// warehouses keep the s3:// warehouse's guarantees, on real servers on 127.0.0.1:
fake-gcs-server and Azurite (tests/cloud_emulators.py). Each test runs once per store.

The sim pipeline writes the same rows as on a local folder; a half-written or uncommitted shard is
never listed; a writer killed between its upload and its marker leaves nothing visible; the lease's
create is conditional (one winner of many) and so are its renewals and deletes; and the
credentials (GCS: client secret, refresh and access tokens; Azure: the account key) appear in no
object, no local file and no command output (issue 20).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud_emulators import SECRETS, cloud_root, credentials_were_used, store_objects  # noqa: F401 (fixture)
from prm_data.cli import app
from prm_data.pipeline.serial import run_serial
from prm_data.warehouses import open_warehouse
from test_executors import table_contents
from test_object_store import KILLED_WRITER, SHARD_ROWS, run_script, shard_rows
from test_object_store_pipeline import export_tables, small_sim

pytestmark = pytest.mark.network
runner = CliRunner()




def test_the_sim_pipeline_writes_the_same_rows_as_on_a_local_folder_and_never_a_credential(small_sim_local_run,
                                                                                           cloud_root, tmp_path):
    scheme = cloud_root.split("://")[0]
    local_config, local_summary = small_sim_local_run
    config = small_sim(tmp_path, warehouse=cloud_root)
    summary = run_serial(config)
    assert summary["run_id"] == local_summary["run_id"]
    local_tables, tables = table_contents(local_config), table_contents(config)
    assert tables == local_tables
    assert len(tables["step_labels"]) > 0 and len(tables["final_labels"]) > 0
    assert export_tables(Path(config.export.out_dir)) == export_tables(Path(local_config.export.out_dir))
    objects = store_objects(cloud_root)
    assert any("/tables/step_labels/run_id=" in k and k.endswith(".commit") for k in objects)
    assert not list(tmp_path.rglob(f"{scheme}:*"))  # nothing in a local folder named like the URL

    outputs = []
    for args in (["tables", "--format", "json"],
                 ["query", "--format", "json", "SELECT labeler, count(*) AS n FROM step_labels GROUP BY ALL ORDER BY 1"],
                 ["export", "--out", str(tmp_path / "cli-export")]):
        result = runner.invoke(app, ["--warehouse", cloud_root, *args])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    counts = {t["name"]: t["rows"] for t in json.loads(outputs[0])}
    assert {t: counts[t] for t in local_tables} == {t: len(rows) for t, rows in local_tables.items()}
    assert export_tables(tmp_path / "cli-export") == export_tables(Path(local_config.export.out_dir))

    secrets = SECRETS[scheme]
    assert credentials_were_used(scheme)
    leaked = [k for k, body in objects.items() if any(s.encode() in body or s in k for s in secrets)]
    leaked += [str(p) for p in tmp_path.rglob("*") if p.is_file() and any(s.encode() in p.read_bytes() for s in secrets)]
    leaked += [o for o in outputs if any(s in o for s in secrets)]
    assert leaked == []


def test_a_listing_never_shows_an_uncommitted_or_torn_shard(cloud_root):
    """Objects that look like shard data but have no marker (an upload killed before its marker, and a
    truncated one) sit beside committed versions: listings and counts see committed versions only."""
    from prm_data.schema import to_table
    from prm_data.storage.object_warehouse import _parquet_bytes

    warehouse = open_warehouse(cloud_root)
    folder = f"{cloud_root.split('://')[1]}/tables/problems/run_id=writer"
    whole = _parquet_bytes(to_table("problems", shard_rows(999)))
    for name, body in (("orphan", whole), ("torn", whole[: len(whole) // 2])):
        warehouse.fs.pipe_file(f"{folder}/{name}~{time.time_ns():019d}abcd~{'0' * 32}.parquet", body)
    for shard in range(3):
        warehouse.write_shard("problems", shard_rows(shard), run_id="writer", shard=f"s{shard}")
        assert sorted(p.stem for p in warehouse.run_files("problems", "writer")) == [f"s{i}" for i in range(shard + 1)]
        assert warehouse.scalar("SELECT count(*) FROM problems") == (shard + 1) * SHARD_ROWS
    warehouse.write_shard("problems", shard_rows(0, version=7), run_id="writer", shard="s0")  # a replacement
    assert warehouse.scalar("SELECT count(*), count(DISTINCT problem_id) FROM problems") == 3 * SHARD_ROWS
    assert warehouse.rows("SELECT DISTINCT answer FROM problems WHERE problem_id LIKE 'p0-%'") == [{"answer": "7"}]


def test_a_writer_killed_between_its_upload_and_its_marker_leaves_nothing_visible(cloud_root):
    proc = run_script(KILLED_WRITER.format(tests=os.path.dirname(__file__)), cloud_root, "before-marker")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    warehouse = open_warehouse(cloud_root)
    keys = [k for k in store_objects(cloud_root) if "/run_id=writer/s~" in k]
    assert sorted(k.rsplit(".", 1)[1] for k in keys) == ["commit", "parquet", "parquet"]  # the killed upload is there
    assert warehouse.rows("SELECT DISTINCT answer FROM problems") == [{"answer": "1"}]  # ... and not visible
    warehouse.write_shard("problems", shard_rows(0, version=2), run_id="writer", shard="s")  # the rerun
    assert warehouse.rows("SELECT DISTINCT answer FROM problems") == [{"answer": "2"}]
    assert warehouse.scalar("SELECT count(*) FROM problems") == SHARD_ROWS


def test_the_leases_writes_are_conditional_and_one_of_many_racing_creators_wins(cloud_root):
    from prm_data.storage.conditional import conditional_store
    from prm_data.storage.lease import Lease

    warehouse = open_warehouse(cloud_root)
    store = conditional_store(warehouse.fs)
    key = f"{cloud_root.split('://')[1]}/locks/raced.lease"
    won, start = [], threading.Barrier(8)

    def create(i):
        start.wait()
        won.append((i, store.create(key, f"worker {i}".encode())))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [(i, token) for i, token in won if token is not None]
    assert len(won) == 8 and len(winners) == 1, won
    body, token = store.read(key)
    assert (body, token) == (f"worker {winners[0][0]}".encode(), winners[0][1])
    assert store.create(key, b"late") is None
    newer = store.replace(key, b"renewed", token)
    assert newer is not None and newer != token
    assert store.replace(key, b"stale writer", token) is None  # written since: refused
    assert store.read(key) == (b"renewed", newer)
    assert store.delete(key, newer) and store.read(key) is None
    assert store.replace(key, b"gone", newer) is None and not store.delete(key, newer)

    holder, other = Lease(warehouse.fs, key), Lease(warehouse.fs, key)
    assert holder.acquire() and not other.acquire(wait_s=0.3)
    assert f"pid {os.getpid()}" in other.holder()
    holder.release()
    assert other.acquire()
    other.release()
    assert store.read(key) is None


def test_a_missing_bucket_is_refused_without_a_credential_in_the_message(cloud_root):
    scheme = cloud_root.split("://")[0]
    missing = f"{scheme}://prm-missing-{os.getpid()}/wh"
    for args in (["tables"], ["query", "SELECT 1"], ["report", "--out", "unused"]):
        result = runner.invoke(app, ["--warehouse", missing, *args])
        assert result.exit_code == 1 and "no warehouse at" in result.output, result.output
        assert not any(s in result.output for s in SECRETS[scheme])


def test_a_delete_conditional_on_a_version_that_was_replaced_is_refused(cloud_root):
    """What a stale-lease takeover and a release rely on: the delete names the version it read."""
    from prm_data.storage.conditional import conditional_store

    if cloud_root.startswith("gs://"):
        pytest.skip("fake-gcs-server ignores ifGenerationMatch (and generation) on DELETE: it deleted a replaced "
                    "version when tried; GCS's objects.delete honours ifGenerationMatch (not testable offline)")
    store = conditional_store(open_warehouse(cloud_root).fs)
    key = f"{cloud_root.split('://')[1]}/locks/replaced.lease"
    first = store.create(key, b"first")
    second = store.replace(key, b"second", first)
    assert not store.delete(key, first)
    assert store.read(key) == (b"second", second)


def test_a_query_reads_nothing_outside_the_warehouses_tables(cloud_root, tmp_path):
    warehouse = open_warehouse(cloud_root)
    warehouse.write_shard("problems", shard_rows(0)[:1], run_id="r", shard="a")
    other = cloud_root.rsplit("/", 1)[0] + "/elsewhere/x.parquet"
    warehouse.fs.pipe_file(other.split("://", 1)[1], warehouse.fs.cat_file(warehouse.run_files("problems", "r")[0]
                                                                           .split("://", 1)[1]))
    local = tmp_path / "local.csv"
    local.write_text("a\n1\n")
    assert warehouse.fs.exists(other.split("://", 1)[1])  # it is there: a query is refused it, not missing it
    for sql, reason in ((f"SELECT * FROM read_parquet('{other}')", "outside the warehouse"),
                        (f"SELECT * FROM read_csv('{local}')", "")):
        result = runner.invoke(app, ["--warehouse", cloud_root, "query", sql])
        assert result.exit_code == 1 and reason in " ".join(result.output.split()), result.output
    result = runner.invoke(app, ["--warehouse", cloud_root, "query", "--format", "json", "SELECT count(*) AS n FROM problems"])
    assert result.exit_code == 0 and json.loads(result.output) == [{"n": 1}], result.output
