"""Warehouse-wide locks between processes: an exclusive `flock` per name under `<warehouse>/locks/`.

Two processes that must not interleave a check and a write (adding problems,
working on one run, exporting the request cache) serialize on one of these
(`Warehouse.lock(name)`). The kernel drops a lock when its holder exits or is
killed, so a crashed process never leaves a stale one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class WarehouseBusy(RuntimeError):
    """Something in the warehouse (the .duckdb file, a lock) is held by another process for longer than we wait."""


class ProcessLock:
    """An exclusive `flock` on `<warehouse>/locks/<name>.lock`, held by one process at a time.

    The kernel releases it when the holder exits or is killed, so a crashed
    process never leaves a stale lock. The file says who holds it (pid, since).
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait_s: float = 0.0) -> bool:
        """Take the lock, waiting up to `wait_s`; False if another process still holds it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def __enter__(self) -> ProcessLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
