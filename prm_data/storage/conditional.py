"""Conditional writes on each object store: the four operations a lease (lease.py) is built from.

Every store offers a create that fails when the object exists and a write and a delete that fail
when the object changed since it was read; each names "the version I read" its own way:

| operation | S3 | GCS (JSON API) | Azure Blob |
|---|---|---|---|
| create if absent | PUT `If-None-Match: *` | upload `ifGenerationMatch=0` | Put Blob `If-None-Match: *` |
| replace if unchanged | PUT `If-Match: <ETag>` | upload `ifGenerationMatch=<generation>` | Put Blob `If-Match: <ETag>` |
| delete if unchanged | DELETE `If-Match: <ETag>` | DELETE `ifGenerationMatch=<generation>` | Delete Blob `If-Match: <ETag>` |
| refused | 412 (409 on a concurrent create) | 412 | 409 (exists) / 412 |

All three are atomic on the server, so the lease's guarantee (of any number of workers creating
or taking over one lease, at most one wins) is the same on each. The `token` a caller keeps is
the ETag (S3, Azure) or the generation number (GCS) of the version it wrote or read.
"""

from __future__ import annotations

import json
import os
from typing import Protocol
from urllib.parse import quote

from fsspec.asyn import sync


class ConditionalStore(Protocol):
    def create(self, key: str, body: bytes) -> str | None:
        """Write `key` only if absent; its token, or None when it exists."""

    def read(self, key: str) -> tuple[bytes, str] | None:
        """(body, token), or None when absent."""

    def replace(self, key: str, body: bytes, token: str) -> str | None:
        """Overwrite `key` only if still at `token`; the new token, or None when it changed or is gone."""

    def delete(self, key: str, token: str) -> bool:
        """Delete `key` only if still at `token`; False when it changed or is gone."""


def precondition_failed(exc: BaseException) -> bool:
    """Whether a conditional request was refused (HTTP 412 or 409; s3fs and gcsfs raise FileExistsError)."""
    text = f"{type(exc).__name__} {exc} {exc.__cause__!r}"
    return isinstance(exc, FileExistsError) or any(s in text for s in (
        "PreconditionFailed", "pre-conditions", "ConditionalRequestConflict", "ConditionNotMet",
        "ResourceModifiedError", "ResourceExistsError", "BlobAlreadyExists"))


def _split(key: str) -> tuple[str, str]:
    bucket, _, name = key.partition("/")
    return bucket, name


class S3Conditional:
    def __init__(self, fs):
        self.fs = fs

    def _call(self, method: str, key: str, **kwargs):
        bucket, name = _split(key)
        return sync(self.fs.loop, self.fs._call_s3, method, Bucket=bucket, Key=name, **kwargs)

    def create(self, key, body):
        return self._refusable(lambda: self._call("put_object", key, Body=body, IfNoneMatch="*")["ETag"])

    def read(self, key):
        try:
            out = self._call("get_object", key)
        except FileNotFoundError:
            return None
        return sync(self.fs.loop, out["Body"].read), out["ETag"]

    def replace(self, key, body, token):
        return self._refusable(lambda: self._call("put_object", key, Body=body, IfMatch=token)["ETag"])

    def delete(self, key, token):
        return self._refusable(lambda: self._call("delete_object", key, IfMatch=token) or True) is not None

    @staticmethod
    def _refusable(call):
        try:
            return call()
        except Exception as exc:
            if precondition_failed(exc) or isinstance(exc, FileNotFoundError):
                return None
            raise


class GCSConditional(S3Conditional):
    def _upload(self, key: str, body: bytes, generation: str) -> str:
        """A multipart upload (metadata + media, one request) conditional on `generation` (0: absent).
        Multipart, as gcsfs's own writes: fake-gcs-server checks preconditions on it, not on a media upload."""
        bucket, name = _split(key)
        boundary = "prm-data-" + os.urandom(8).hex()
        payload = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                   f"{json.dumps({'name': name})}\r\n--{boundary}\r\nContent-Type: application/octet-stream"
                   "\r\n\r\n").encode() + body + f"\r\n--{boundary}--".encode()
        out = sync(self.fs.loop, self.fs._call, "POST", f"{self.fs._location}/upload/storage/v1/b/{quote(bucket)}/o",
                   uploadType="multipart", ifGenerationMatch=generation, data=payload, json_out=True,
                   headers={"Content-Type": f'multipart/related; boundary="{boundary}"'})
        return str(out["generation"])

    def create(self, key, body):
        return self._refusable(lambda: self._upload(key, body, "0"))

    def read(self, key):
        bucket, name = _split(key)
        try:
            meta = sync(self.fs.loop, self.fs._call, "GET", "b/{}/o/{}", bucket, name, json_out=True)
            generation = str(meta["generation"])
            _, body = sync(self.fs.loop, self.fs._call, "GET", "b/{}/o/{}", bucket, name, alt="media",
                           generation=generation)
        except FileNotFoundError:  # absent, or replaced between the two requests: the caller reads again
            return None
        return body, generation

    def replace(self, key, body, token):
        return self._refusable(lambda: self._upload(key, body, token))

    def delete(self, key, token):
        bucket, name = _split(key)
        # `generation` as well: it names the version to delete (404 when that is no longer the live one),
        # which fake-gcs-server honours where it ignores ifGenerationMatch on a delete
        return self._refusable(lambda: sync(self.fs.loop, self.fs._call, "DELETE", "b/{}/o/{}", bucket, name,
                                            generation=token, ifGenerationMatch=token) or True) is not None


class AzureConditional(S3Conditional):
    def _blob(self, key: str):
        container, name = _split(key)
        return self.fs.service_client.get_blob_client(container=container, blob=name)

    def _run(self, coroutine_fn):
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return sync(self.fs.loop, coroutine_fn)
        except ResourceNotFoundError as exc:
            raise FileNotFoundError(str(exc).splitlines()[0]) from None

    def create(self, key, body):
        async def put():
            return (await self._blob(key).upload_blob(body, overwrite=False))["etag"]

        return self._refusable(lambda: self._run(put))

    def read(self, key):
        async def get():
            download = await self._blob(key).download_blob()
            return await download.readall(), download.properties.etag

        try:
            return self._run(get)
        except FileNotFoundError:
            return None

    def replace(self, key, body, token):
        from azure.core import MatchConditions

        async def put():
            return (await self._blob(key).upload_blob(body, overwrite=True, etag=token,
                                                      match_condition=MatchConditions.IfNotModified))["etag"]

        return self._refusable(lambda: self._run(put))

    def delete(self, key, token):
        from azure.core import MatchConditions

        async def remove():
            await self._blob(key).delete_blob(etag=token, match_condition=MatchConditions.IfNotModified)
            return True

        return self._refusable(lambda: self._run(remove)) is not None


def conditional_store(fs) -> ConditionalStore:
    """The conditional operations of the store `fs` (a filesystem from roots.filesystem) speaks to."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "s3" in protocols:
        return S3Conditional(fs)
    if "gs" in protocols:
        return GCSConditional(fs)
    if "az" in protocols:
        return AzureConditional(fs)
    raise RuntimeError(f"no conditional writes for {protocols} (prm_data/storage/conditional.py)")
