"""Which shards of a table hold which keys: the index behind `Warehouse.read_keyed` (issue 21).

A stage that reads the steps (or labels, or rollouts) of its shard's rollouts must find
the few shards of the run that hold them without scanning the run. `ShardKeys` learns
the keys a shard holds once per shard and process, by reading that one column (again
when the file is replaced: its inode, size and mtime change), and keeps the map from
each key to the shards holding it, so a lookup costs the keys asked for, not the
shards of the run: with a set of keys per shard, each lookup compared the keys with
every shard's, and the 750 aggregate lookups of a 12,000-problem run each compared
128 keys with 4,500 step-label shards. Keys are interned, so the indexes of a run's
tables (steps, rollouts and step labels, all by rollout id) share one copy of each id.

What a lookup still costs per shard of the run is one `stat` (the listing that notices
new, replaced and removed shards), a few microseconds each.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable

import pyarrow.parquet as pq


class ShardKeys:
    """Shard path -> the keys of one column it holds, and key -> the shards holding it."""

    def __init__(self, column: str):
        self.column = column
        self._stamps: dict[str, tuple] = {}  # path -> (inode, size, mtime) when its keys were read
        self._keys: dict[str, tuple[str, ...]] = {}  # path -> its distinct keys
        self._holders: dict[str, list[str]] = {}  # key -> the paths that hold it
        self._lock = threading.Lock()

    def holding(self, folders: Iterable[str], wanted: set[str]) -> list[str]:
        """The shards (`*.parquet` in `folders`, not writers' hidden temporary files) that hold one of
        `wanted`, after bringing the index up to date with what the folders hold now; sorted."""
        listing = {}
        for folder in folders:
            try:
                with os.scandir(folder) as entries:
                    for e in entries:
                        if e.name.endswith(".parquet") and not e.name.startswith("."):
                            try:
                                st = e.stat()
                            except FileNotFoundError:
                                continue  # removed since the listing
                            listing[e.path] = (st.st_ino, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                continue
        with self._lock:
            for path in [p for p in self._stamps if listing.get(p) != self._stamps[p]]:
                self._forget(path)  # removed or replaced
            for path, stamp in listing.items():
                if path not in self._stamps:
                    self._learn(path, stamp)
            found = {p for key in wanted for p in self._holders.get(key, ())}
        return sorted(found)

    def _learn(self, path: str, stamp: tuple) -> None:
        try:
            column = pq.read_table(path, columns=[self.column]).column(0).unique()
        except FileNotFoundError:
            return  # removed since the listing
        keys = tuple(sys.intern(k) for k in column.to_pylist() if k is not None)
        self._stamps[path], self._keys[path] = stamp, keys
        for key in keys:
            self._holders.setdefault(key, []).append(path)

    def _forget(self, path: str) -> None:
        del self._stamps[path]
        for key in self._keys.pop(path):
            holders = self._holders[key]
            holders.remove(path)
            if not holders:
                del self._holders[key]
