"""The fsspec filesystem of an object-store warehouse root, and where each worker keeps local state.

Credentials are never passed here: s3fs (through botocore) reads them from the environment and
the provider's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance
role), and an S3-compatible server from AWS_ENDPOINT_URL, so nothing the warehouse writes can
carry them. Listings are never cached (`use_listings_cache=False`): a reader must see a marker
committed by another worker a moment ago.
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

_FILESYSTEMS: dict[tuple[int, str], object] = {}


def _s3_class():
    try:
        import s3fs
    except ImportError as exc:  # an optional extra
        raise RuntimeError("an s3:// warehouse needs s3fs: pip install 'prm-data[s3]'") from exc

    class WarehouseS3FileSystem(s3fs.S3FileSystem):
        """s3fs that counts the S3 requests it sends, by operation (`requests`, for the benchmarks), and
        keeps the metadata of immutable keys: DuckDB asks for a file's size several times per query
        (a HEAD request each), and a shard version's key never changes."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.requests: collections.Counter = collections.Counter()
            self._immutable_info: dict[str, dict] = {}

        async def _call_s3(self, method, *args, **kwargs):
            self.requests[method] += 1
            return await super()._call_s3(method, *args, **kwargs)

        async def _info(self, path, bucket=None, key=None, refresh=False, version_id=None):
            stripped = self._strip_protocol(path)
            if not refresh and version_id is None and stripped in self._immutable_info:
                return dict(self._immutable_info[stripped])
            info = await super()._info(path, bucket=bucket, key=key, refresh=refresh, version_id=version_id)
            if version_id is None and info.get("type") == "file" and _IMMUTABLE.search(stripped):
                self._immutable_info[stripped] = dict(info)
            return info

        async def _rm_file(self, path, **kwargs):
            self._immutable_info.pop(self._strip_protocol(path), None)
            return await super()._rm_file(path, **kwargs)

    return WarehouseS3FileSystem


def filesystem(url: str):
    """This process's filesystem for the object store of `url` (one per process and scheme)."""
    scheme = url.split("://", 1)[0]
    key = (os.getpid(), scheme)
    fs = _FILESYSTEMS.get(key)
    if fs is None:
        if scheme != "s3":
            raise RuntimeError(f"no filesystem for {scheme}:// (prm_data/warehouse_root.py lists the supported ones)")
        fs = _FILESYSTEMS[key] = _s3_class()(use_listings_cache=False, skip_instance_cache=True)
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
