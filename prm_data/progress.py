"""Progress events for long stages, decoupled from how they are shown.

Library code calls `advance(task, n, total)`; a front end (the CLI's rich
progress bars) subscribes with `listen`. With no listener, calls cost nothing.
Events from worker threads are fine; other processes (Dask workers) simply
report to nobody.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Listener = Callable[[str, int, int | None], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def listen(fn: Listener) -> Callable[[], None]:
    """Subscribe; returns a function that unsubscribes."""
    with _lock:
        _listeners.append(fn)

    def stop() -> None:
        with _lock:
            if fn in _listeners:
                _listeners.remove(fn)

    return stop


def advance(task: str, n: int = 1, total: int | None = None) -> None:
    """`n` more units of `task` are done; `total` (when known) grows the task's expected total."""
    if not _listeners:
        return
    with _lock:
        listeners = list(_listeners)
    for fn in listeners:
        fn(task, n, total)
