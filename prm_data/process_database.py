"""This process's one in-memory DuckDB database per warehouse, and reading through it safely.

Every query of the library runs on a cursor of one in-memory database per
(process, warehouse), whose views are made once (`Warehouse.connect()`), so a
query costs no database and no view per table (issue 21). Beside it the process
keeps, per (table, run, column), which shards hold which keys (`read_keyed`,
prm_data/shard_keys.py), a few of them, least recently used first out.

Atomic rename keeps every shard whole, but a reader opens a Parquet file more
than once per query (DuckDB reads the schema at bind time and the data at scan
time through new handles), so a shard *replaced* during a query is read half
from each version and the query fails; `retry_torn_reads` retries such a read.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from pathlib import Path

import duckdb

from prm_data.shard_keys import ShardKeys

# What a query says when a shard was replaced or removed between its reads of the file.
_TORN_READ = re.compile(r"TProtocolException|No magic bytes|too small to be a Parquet file|"
                        r"Cannot open file \"[^\"]*\.parquet\"|No such file or directory")


def retry_torn_reads(run, attempts: int = 20):
    """`run()`, retried while it fails because a shard was replaced under the query (see above).

    Jittered, capped backoff (at most ~3 s in all): a reader must not fall into step with a
    writer that replaces the same shard over and over.
    """
    for attempt in range(attempts):
        try:
            return run()
        except duckdb.Error as exc:
            if attempt == attempts - 1 or not _TORN_READ.search(str(exc)):
                raise
            time.sleep(min(0.01 * 2**attempt, 0.2) * random.uniform(0.5, 1.5))


def sql_literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class ProcessDatabase:
    """This process's one in-memory DuckDB database for a warehouse (see `process_database`).

    `views_made`: whether the views over every run's shards exist yet (made on the first
    `Warehouse.connect()`, not before: making them reads the footer of every shard, so a
    process that reads only one run's shards never pays it); `run_schemas`: run id -> what
    each table's shards of that run were like when its schema of views was made, and
    `file_schemas`: shard path -> (file stamp, whether it has its table's exact schema), both
    for `for_run(warehouse, run_id)` (prm_data/run_warehouse.py).
    """

    def __init__(self) -> None:
        self.con = duckdb.connect(":memory:")
        self.lock = threading.Lock()
        self.views_made = False
        self.run_schemas: dict[str, tuple[str, ...]] = {}
        self.file_schemas: dict[str, tuple[tuple, bool]] = {}


_DATABASES: dict[tuple[int, str], ProcessDatabase] = {}
_DATABASES_LOCK = threading.Lock()
_KEY_INDEXES: dict[tuple[str, str, str | None, str], ShardKeys] = {}
_KEY_INDEXES_KEPT = 8  # (table, run, column) indexes a process keeps; a run needs a few


def key_index(warehouse, table: str, run_id: str | None, column: str) -> ShardKeys:
    """Which of one run's (None: every run's) shards of a table hold which keys (see read_keyed)."""
    key = (str(warehouse.root), table, run_id, column)
    with _DATABASES_LOCK:
        index = _KEY_INDEXES.pop(key, None)
        if index is None:
            index = ShardKeys(column)
            while len(_KEY_INDEXES) >= _KEY_INDEXES_KEPT:
                _KEY_INDEXES.pop(next(iter(_KEY_INDEXES)))  # the least recently used
        _KEY_INDEXES[key] = index  # now the most recently used
        return index


def process_database(warehouse) -> ProcessDatabase:
    """This process's in-memory database for the warehouse, created (bare) on first use.

    Keyed by pid too: a forked child must not use its parent's database.
    """
    key = (os.getpid(), str(warehouse.root))
    with _DATABASES_LOCK:
        db = _DATABASES.get(key)
        if db is None:
            db = _DATABASES[key] = ProcessDatabase()
        return db
