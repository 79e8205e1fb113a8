"""Warehouse locks across machines: leases on the object store (docs/warehouse.md, "Run claims").

`locks/<name>.lease` is created with a conditional PUT (`If-None-Match: *`): of any number of
workers creating it at once exactly one wins. It says who holds it (host, pid, token) and until
when; the holder renews it (PUT `If-Match: <its ETag>`) every `ttl_s / 3` from a daemon thread
and deletes it (`If-Match`) on release. A worker takes a lease over only when it has expired,
or when its holder ran on this host and its pid is gone (a kill -9, then a rerun here, does not
wait out the TTL): DELETE `If-Match: <the stale ETag>`, then the conditional create again, so
two workers taking over one stale lease cannot both win.

Same interface as `prm_data.warehouse.ProcessLock`: acquire(wait_s), release(), holder().
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from fsspec.asyn import sync

DEFAULT_TTL_S = 120.0


class LeaseLost(RuntimeError):
    """This worker's lease was taken over (it could not renew it for over its TTL)."""


def precondition_failed(exc: BaseException) -> bool:
    """Whether a conditional request was refused (HTTP 412; s3fs raises it as FileExistsError)."""
    text = f"{type(exc).__name__} {exc} {exc.__cause__!r}"
    return isinstance(exc, FileExistsError) or any(
        s in text for s in ("PreconditionFailed", "pre-conditions", "ConditionalRequestConflict"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """An exclusive lease on `<root>/locks/<name>.lease` (see the module docstring)."""

    def __init__(self, fs, key: str, ttl_s: float = DEFAULT_TTL_S):
        self.fs, self.key, self.ttl_s = fs, key, ttl_s
        self._bucket, _, self._object = key.partition("/")
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._token = uuid.uuid4().hex
        self.lost = False

    # ------------------------------------------------------------ S3 calls
    def _call(self, method: str, **kwargs):
        return sync(self.fs.loop, self.fs._call_s3, method, Bucket=self._bucket, Key=self._object, **kwargs)

    def _body(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self._token,
                           "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "expires": time.time() + self.ttl_s}).encode()

    def _read(self) -> tuple[dict, str] | None:
        try:
            out = self._call("get_object")
        except FileNotFoundError:
            return None
        body = sync(self.fs.loop, out["Body"].read)
        try:
            return json.loads(body), out["ETag"]
        except ValueError:
            return {}, out["ETag"]

    def _create(self) -> bool:
        try:
            out = self._call("put_object", Body=self._body(), IfNoneMatch="*")
        except Exception as exc:
            if precondition_failed(exc):
                return False
            raise
        self._etag = out["ETag"]
        return True

    # ------------------------------------------------------------- the lock
    def acquire(self, wait_s: float = 0.0) -> bool:
        """Take the lease, waiting up to `wait_s`; False if another living worker still holds it."""
        deadline = time.monotonic() + wait_s
        while True:
            if self._create():
                self._start_renewing()
                return True
            held = self._read()
            if held is not None and self._stale(held[0]):
                try:
                    self._call("delete_object", IfMatch=held[1])  # only that stale lease, not a new one
                except Exception as exc:
                    if not (precondition_failed(exc) or isinstance(exc, FileNotFoundError)):
                        raise
                continue
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    def _stale(self, held: dict) -> bool:
        if held.get("expires", 0) < time.time():
            return True
        return held.get("host") == socket.gethostname() and not _pid_alive(int(held.get("pid", -1)))

    def _start_renewing(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease {self.key}", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self._etag = self._call("put_object", Body=self._body(), IfMatch=self._etag)["ETag"]
            except Exception as exc:
                if precondition_failed(exc) or isinstance(exc, FileNotFoundError):
                    self.lost = True  # taken over: stop renewing, never delete another's lease
                    return
                # a network error: try again at the next tick; the TTL covers two missed renewals

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        if self._etag is not None and not self.lost:
            try:
                self._call("delete_object", IfMatch=self._etag)
            except Exception as exc:
                if not (precondition_failed(exc) or isinstance(exc, FileNotFoundError)):
                    raise
        self._etag = None

    def holder(self) -> str:
        held = self._read()
        if held is None or not held[0]:
            return "unknown"
        h = held[0]
        return f"host {h.get('host')} pid {h.get('pid')} since {h.get('since')}"

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
