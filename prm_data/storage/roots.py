"""The fsspec filesystem of an object-store warehouse root, and where each worker keeps local state.

| scheme | library | credentials (never passed here: each library reads its provider's usual chain) |
|---|---|---|
| `s3://` | s3fs | AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role; an S3-compatible server from AWS_ENDPOINT_URL |
| `gs://` | gcsfs (`gcsfs.core.GCSFileSystem`, the JSON API) | GOOGLE_APPLICATION_CREDENTIALS, gcloud's default credentials, the metadata server; an emulator from STORAGE_EMULATOR_HOST |
| `az://` | adlfs | AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY / AZURE_STORAGE_SAS_TOKEN / a service principal (AZURE_STORAGE_CLIENT_ID, _SECRET, TENANT_ID) |

So nothing the warehouse writes can carry a credential. Listings are never cached
(`use_listings_cache=False`): a reader must see a marker committed by another worker a moment
ago. gcsfs's default class (`gcsfs.GCSFileSystem` is `ExtendedGcsFileSystem` since 2025.10)
asks a gRPC control API for every bucket's layout (zonal / hierarchical) before its first
read; that request is not needed for standard buckets, uncounted, and waits 60 s where the
API is absent (an emulator), so the plain JSON-API class is used: zonal buckets are not supported.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
from pathlib import Path

# Keys written once and never rewritten: a shard version's data (prm_data/storage/commit.py) and a
# table's anchor (created with a conditional PUT). Their metadata can be cached for the process.
_IMMUTABLE = re.compile(r"(~\d{19}[0-9a-f]{4}~[0-9a-f]{32}\.parquet|/_schema\.parquet)$")
# what to install for each scheme (the extras of pyproject.toml)
EXTRAS = {"s3": "s3fs", "gs": "gcsfs", "az": "adlfs"}

_FILESYSTEMS: dict[tuple[int, str], object] = {}


class _ImmutableInfo:
    """Keeps the metadata of immutable keys: DuckDB asks for a file's size several times per query (a
    HEAD request each on S3, a metadata GET on GCS and Azure), and a shard version's key never changes.
    `requests` counts what the store was sent, by operation (for benchmarks/object_store_scale.py)."""

    def _init_counts(self) -> None:
        self.requests: collections.Counter = collections.Counter()
        self._immutable_info: dict[str, dict] = {}

    async def _info(self, path, *args, **kwargs):  # s3fs passes (bucket, key) positionally
        stripped = self._strip_protocol(path)
        pinned = any(kwargs.get(k) for k in ("version_id", "generation", "version"))
        if not kwargs.get("refresh") and not pinned and stripped in self._immutable_info:
            return dict(self._immutable_info[stripped])
        info = await super()._info(path, *args, **kwargs)
        if not pinned and info.get("type") == "file" and _IMMUTABLE.search(stripped):
            self._immutable_info[stripped] = dict(info)
        return info

    async def _exists(self, path, **kwargs):  # adlfs: a HEAD per call, DuckDB asks before each open
        if self._strip_protocol(path) in self._immutable_info:
            return True
        return await super()._exists(path, **kwargs)

    async def _isfile(self, path, **kwargs):
        if self._strip_protocol(path) in self._immutable_info:
            return True
        return await super()._isfile(path, **kwargs)

    async def _rm_file(self, path, **kwargs):
        self._immutable_info.pop(self._strip_protocol(path), None)
        return await super()._rm_file(path, **kwargs)


def _import(scheme: str):
    try:
        if scheme == "s3":
            import s3fs
            return s3fs.S3FileSystem
        if scheme == "gs":
            from gcsfs.core import GCSFileSystem
            return GCSFileSystem
        from adlfs import AzureBlobFileSystem
        return AzureBlobFileSystem
    except ImportError as exc:  # an optional extra
        raise RuntimeError(f"a {scheme}:// warehouse needs {EXTRAS[scheme]}: pip install 'prm-data[{scheme}]'") from exc


def _gcs_operation(method: str, path: str, kwargs: dict) -> str:
    if method == "GET":
        if kwargs.get("alt") == "media" or "/download/" in path:
            return "get"
        return "list" if path.rstrip("/").endswith("/o") else "metadata"
    return {"POST": "put", "DELETE": "delete"}.get(method, method.lower())


def _azure_operation(method: str, url: str) -> str:
    if method == "GET":
        return "list" if "comp=list" in url else "get"
    return {"HEAD": "metadata", "PUT": "put", "DELETE": "delete"}.get(method, method.lower())


def _make_class(scheme: str):
    base = _import(scheme)

    if scheme == "s3":
        class WarehouseS3FileSystem(_ImmutableInfo, base):
            """s3fs that counts requests by S3 operation and keeps immutable keys' metadata."""

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._init_counts()

            async def _call_s3(self, method, *args, **kwargs):
                self.requests[method] += 1
                return await super()._call_s3(method, *args, **kwargs)

        return WarehouseS3FileSystem

    if scheme == "gs":
        class WarehouseGCSFileSystem(_ImmutableInfo, base):
            """gcsfs (JSON API) that counts requests (list, metadata, get, put, delete) and keeps immutable
            keys' metadata."""

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._init_counts()

            async def _request(self, method, path, *args, **kwargs):
                self.requests[_gcs_operation(method, str(path), kwargs)] += 1
                return await super()._request(method, path, *args, **kwargs)

        return WarehouseGCSFileSystem

    class WarehouseAzureFileSystem(_ImmutableInfo, base):
        """adlfs that counts requests (list, metadata, get, put, delete) and keeps immutable keys' metadata.

        adlfs builds the Azure SDK's pipeline without a hook, so the count wraps the `send` of the
        pipeline's transport (`service_client._pipeline._transport`, which every blob client of the
        service client shares); where an SDK version lays that out otherwise, nothing is counted."""

        def __init__(self, *args, **kwargs):
            self._init_counts()  # adlfs connects inside its __init__
            super().__init__(*args, **kwargs)

        def do_connect(self):
            super().do_connect()
            transport = getattr(getattr(self.service_client, "_pipeline", None), "_transport", None)
            if transport is None or not hasattr(transport, "send"):
                return
            send, counts = transport.send, self.requests

            async def counted_send(request, **kwargs):
                counts[_azure_operation(request.method, str(request.url))] += 1
                return await send(request, **kwargs)

            transport.send = counted_send

    return WarehouseAzureFileSystem


def filesystem(url: str):
    """This process's filesystem for the object store of `url` (one per process and scheme)."""
    scheme = url.split("://", 1)[0]
    key = (os.getpid(), scheme)
    fs = _FILESYSTEMS.get(key)
    if fs is None:
        if scheme not in EXTRAS:
            raise RuntimeError(f"no filesystem for {scheme}:// (prm_data/warehouse_root.py lists the supported ones)")
        fs = _FILESYSTEMS[key] = _make_class(scheme)(use_listings_cache=False, skip_instance_cache=True)
    return fs


def strip(url: str) -> str:
    """`s3://bucket/key` -> `bucket/key`, the form fsspec methods take."""
    return url.split("://", 1)[1]


def local_state_dir(url: str) -> Path:
    """This worker's own folder for the warehouse at `url`: the request cache's store, its locks.

    PRM_DATA_LOCAL_STATE, else ~/.cache/prm-data; one subfolder per warehouse URL.
    """
    base = Path(os.environ.get("PRM_DATA_LOCAL_STATE") or Path.home() / ".cache" / "prm-data")
    folder = base / hashlib.sha256(url.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "warehouse-url"
    if not marker.exists():
        marker.write_text(url + "\n")
    return folder
