"""Warehouse locks across machines: leases on the object store (docs/warehouse.md, "Run claims").

`locks/<name>.lease` is created with a conditional create (S3 and Azure `If-None-Match: *`, GCS
`ifGenerationMatch=0`; prm_data/storage/conditional.py): of any number of workers creating it at
once exactly one wins. It says who holds it (host, pid, token) and until when; the holder renews
it (a write conditional on its ETag / generation) every `ttl_s / 3` from a daemon thread and
deletes it (conditionally) on release. A worker takes a lease over only when it has expired, or
when its holder ran on this host and its pid is gone (a kill -9, then a rerun here, does not wait
out the TTL): a delete conditional on the stale version, then the conditional create again, so
two workers taking over one stale lease cannot both win. A create whose reply was lost and that
was retried is refused by its own first attempt: the lease then names this worker's token and is
taken as won.

Same interface as `prm_data.warehouse.ProcessLock`: acquire(wait_s), release(), holder().
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from prm_data.storage.conditional import conditional_store

DEFAULT_TTL_S = 120.0


class LeaseLost(RuntimeError):
    """This worker's lease was taken over (it could not renew it for over its TTL)."""


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
        self.store = conditional_store(fs)
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._token = uuid.uuid4().hex
        self.lost = False

    # ------------------------------------------------------------ store calls
    def _body(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self._token,
                           "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "expires": time.time() + self.ttl_s}).encode()

    def _read(self) -> tuple[dict, str] | None:
        held = self.store.read(self.key)
        if held is None:
            return None
        try:
            return json.loads(held[0]), held[1]
        except ValueError:
            return {}, held[1]

    def _create(self) -> bool:
        etag = self.store.create(self.key, self._body())
        if etag is None:
            held = self._read()  # a retried create refused by its own first attempt: this worker holds it
            if held is None or held[0].get("token") != self._token:
                return False
            etag = held[1]
        self._etag = etag
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
                self.store.delete(self.key, held[1])  # only that stale lease, not a new one
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
                etag = self.store.replace(self.key, self._body(), self._etag)
            except Exception:  # a network error: try again at the next tick; the TTL covers two missed renewals
                continue
            if etag is None:
                self.lost = True  # taken over: stop renewing, never delete another's lease
                return
            self._etag = etag

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        if self._etag is not None and not self.lost:
            self.store.delete(self.key, self._etag)
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
