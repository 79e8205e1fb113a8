"""An S3-compatible server on 127.0.0.1 for the object-store tests: moto's standalone server
(`moto[server]`, the `dev` extra), one per test session, with dummy credentials in the
environment. Each test gets its own bucket, so tests share the server and nothing else.
"""

from __future__ import annotations

import atexit
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

SECRET = "prm-data-test-secret-" + uuid.uuid4().hex  # must never appear in anything the warehouse writes
S3_ENV = {"AWS_ACCESS_KEY_ID": "prmdatatestkey", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SERVER: dict[str, object] = {}


def _start_server() -> str:
    """moto's server in a process of its own (in this one its threads would share the GIL with the
    tests), started once per test process however many modules import the fixture; stopped at exit."""
    if "endpoint" in _SERVER:
        return _SERVER["endpoint"]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(lambda: (server.terminate(), server.wait(10)))
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start (exit {server.poll()})")
            time.sleep(0.1)
    _SERVER.update(endpoint=endpoint, process=server)
    return endpoint


@pytest.fixture
def s3_endpoint(monkeypatch):
    """The server's URL; AWS_ENDPOINT_URL and the dummy credentials are set in the environment, so
    every process a test starts (a worker, a killed writer) reaches it the way a user's would."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    endpoint = _start_server()
    for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    return endpoint


@pytest.fixture
def s3_root(s3_endpoint, tmp_path, monkeypatch):
    """`s3://<a new bucket>/wh`, with this test's own local state folder (the request cache's store)."""
    import boto3

    bucket = "prm-" + uuid.uuid4().hex[:16]
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    monkeypatch.setenv("PRM_DATA_LOCAL_STATE", str(tmp_path / "local-state"))
    return f"s3://{bucket}/wh"


def bucket_objects(s3_endpoint: str, root: str) -> dict[str, bytes]:
    """Every object under the bucket of `root`, key -> bytes (read with boto3, not through prm-data)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = root.split("://", 1)[1].split("/", 1)[0]
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out
