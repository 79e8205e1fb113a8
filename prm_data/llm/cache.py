"""The request cache: every answer paid for is kept, and a rerun reuses it.

Keys are `GenerationRequest.sample_key(backend, model, i)`: a hash of the
backend, model, messages, assistant prefix, sampling parameters, seed and
sample index. Answers live in two places:

- `<warehouse>/llm_cache.sqlite`: the durable store, one SQLite database in
  WAL mode shared by every thread and process. `put` is one committed
  transaction (`synchronous=FULL`: the WAL is fsynced before the commit
  returns), so an answer whose `put` returned survives SIGKILL and power loss,
  and a process killed mid-write loses only its uncommitted transaction.
  `get` is an indexed lookup on demand: opening the cache reads nothing, so its
  open time and memory do not grow with the answers stored (issue 21).
- `<warehouse>/tables/llm_cache/run_id=<run>/b<batch>.parquet`: the
  `llm_cache` table DuckDB queries. `flush()` exports the answers not exported
  yet (any process's, a killed one's too) into Parquet shards.

Why SQLite and not journals with locks (issue 12): one append-only journal per
process needed a discipline across three operations (create, append, adopt a
dead writer's journal) and two lock kinds (a thread lock and `flock`), and a
flush that adopted a journal another thread had just created lost that
thread's answers. SQLite gives atomic multi-writer appends across threads and
processes with its own locking, a torn write is rolled back on open, and a
primary key makes "this key is stored once" a constraint instead of a
convention. DuckDB cannot read it directly (its sqlite extension is not
bundled and cannot be downloaded offline), hence the Parquet export.

The export is crash-safe and never duplicates: under the warehouse lock
`llm_cache_export`, the unexported rows are first stamped with a new batch
number (one transaction), then each stamped batch is written as a shard named
after the batch and marked written. A crash between the two leaves a stamped,
unwritten batch, which the next flush writes again under the same name, with
the same rows.

Who paid: every row carries the run that paid for it and the writer (one id
per process) that stored it. An answer paid by *this run* in *another process*
(one killed before its labels were written) is handed out once with
`cached=False`, so the label that uses it after the resume carries its cost,
as it would have without the crash; answers of other runs are plain hits.

Warehouses written by the journal-based cache (`llm_cache_journal/*.jsonl`)
are imported once, when this store is first opened: journals whose writer is
gone become unexported rows; existing `llm_cache` shards are indexed as
already exported.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

from prm_data.llm.types import Sample
from prm_data.schema import LLM_CACHE

STORE_NAME = "llm_cache.sqlite"
LEGACY_JOURNAL_DIR = "llm_cache_journal"
_COLUMNS = LLM_CACHE.names
_BUSY_TIMEOUT_MS = 120_000  # a writer waits this long for another's transaction (they take milliseconds)
_LEGACY_EXPORTED = -1  # batch of rows imported from shards that already exist
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    request_key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    writer TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s REAL,
    metadata TEXT,
    created_at TEXT NOT NULL,
    batch INTEGER
);
CREATE INDEX IF NOT EXISTS answers_batch ON answers (batch);
CREATE INDEX IF NOT EXISTS answers_run ON answers (run_id);
CREATE TABLE IF NOT EXISTS batches (batch INTEGER PRIMARY KEY, written INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_FIELDS = ("request_key", "run_id", "writer", "backend", "model", "text", "finish_reason", "prompt_tokens",
           "completion_tokens", "latency_s", "metadata", "created_at")
_INSERT = f"INSERT OR IGNORE INTO answers ({', '.join(_FIELDS)}) VALUES ({', '.join('?' * len(_FIELDS))})"
_INSERT_IMPORTED = (f"INSERT OR IGNORE INTO answers ({', '.join(_FIELDS)}, batch) "
                    f"VALUES ({', '.join('?' * (len(_FIELDS) + 1))})")
_PROCESS_TOKENS: dict[int, str] = {}
_INHERITED: list[sqlite3.Connection] = []  # a forked parent's connections, kept open and unused


def process_writer_id() -> str:
    """This process's id as a writer of answers: its pid and a random token (pids are reused)."""
    pid = os.getpid()
    return f"{pid}-{_PROCESS_TOKENS.setdefault(pid, uuid.uuid4().hex[:12])}"


def store_path(warehouse) -> Path:
    """The store sits on this machine's disk: the warehouse root, or an object-store warehouse's `state_dir`."""
    return Path(getattr(warehouse, "state_dir", warehouse.root)) / STORE_NAME


def connect_store(warehouse, fsync: bool = True) -> sqlite3.Connection:
    """A connection to the warehouse's answer store (created, and legacy data imported, on first use)."""
    con = sqlite3.connect(store_path(warehouse), timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                          check_same_thread=False)
    con.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    con.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'OFF'}")
    # First use is serialized across processes: SQLite does not call its busy handler for every lock a
    # journal-mode change needs, so processes creating the store at once got "database is locked".
    # WAL is a property of the file: once set, later openers only read it.
    with warehouse.lock("llm_cache_store", what="opening the request cache"):
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode = WAL")
        con.executescript(_SCHEMA)
        if con.execute("SELECT 1 FROM meta WHERE key = 'legacy_imported'").fetchone() is None:
            _import_legacy(warehouse, con)
    return con


class RequestCache:
    """Answers by request key, persisted in the warehouse; safe across threads and processes.

    `get(key)` returns the stored `Sample` with `cached=True` (or None; or
    `cached=False` once for an answer this run paid for in another process,
    see "Who paid") and counts a hit or a miss; `put(key, sample, backend,
    model)` stores a new answer durably. Answers of other processes are seen at
    once, as every lookup reads the shared store.
    """

    def __init__(self, warehouse, run_id: str, fsync: bool = True):
        self.warehouse = warehouse
        self.run_id = run_id
        self.fsync = fsync
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()  # one connection per process, used by one thread at a time
        self._handed_out: set[str] = set()  # answers paid by this run elsewhere, already served once here
        self._open()

    def _open(self) -> None:
        self._pid = os.getpid()
        self._writer = process_writer_id()
        self._con = connect_store(self.warehouse, self.fsync)

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # a forked child: never use the parent's SQLite connection,
            _INHERITED.append(self._con)  # nor close it (closing may checkpoint the parent's WAL)
            self._open()
        return self._con

    # ------------------------------------------------------------------ reads
    def get(self, key: str) -> Sample | None:
        with self._lock:
            row = self._connection().execute(
                "SELECT text, finish_reason, prompt_tokens, completion_tokens, latency_s, metadata, run_id, writer "
                "FROM answers WHERE request_key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
            text, finish, prompt, completion, latency, metadata, run_id, writer = row
            paid_by_this_run = (run_id == self.run_id and writer != self._writer
                                and key not in self._handed_out)  # see "Who paid" above
            if paid_by_this_run:
                self._handed_out.add(key)
        return Sample(text=text, finish_reason=finish, prompt_tokens=prompt or 0, completion_tokens=completion or 0,
                      latency_s=latency or 0.0, request_key=key, cached=not paid_by_this_run,
                      metadata=json.loads(metadata) if metadata else {})

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return self._connection().execute(
                "SELECT 1 FROM answers WHERE request_key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        with self._lock:
            return self._connection().execute("SELECT count(*) FROM answers").fetchone()[0]

    # ----------------------------------------------------------------- writes
    def put(self, key: str, sample: Sample, backend: str, model: str) -> None:
        """Store an answer; it is committed (and fsynced) when this returns. A key stored before is kept."""
        values = (key, self.run_id, self._writer, backend, model, sample.text, sample.finish_reason,
                  int(sample.prompt_tokens), int(sample.completion_tokens), float(sample.latency_s),
                  json.dumps(sample.metadata, sort_keys=True, default=str),
                  datetime.now(timezone.utc).isoformat())
        with self._lock:
            self._connection().execute(_INSERT, values)  # autocommit: one transaction

    def flush(self) -> list[Path]:
        """Export every answer not yet in the `llm_cache` table (any process's) into Parquet shards.

        Returns the shards written. The cache stays usable.
        """
        with self._lock:
            return export_pending(self.warehouse, self._connection())

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def export_pending(warehouse, con: sqlite3.Connection) -> list[Path]:
    """Stamp unexported answers with a new batch, then write every unwritten batch (see the module doc)."""
    if con.execute("SELECT 1 FROM answers WHERE batch IS NULL LIMIT 1").fetchone() is None and \
            con.execute("SELECT 1 FROM batches WHERE written = 0 LIMIT 1").fetchone() is None:
        return []  # the common case, without taking the warehouse lock
    written = []
    with warehouse.lock("llm_cache_export", what="the request cache's export"):
        con.execute("BEGIN IMMEDIATE")
        try:
            if con.execute("SELECT 1 FROM answers WHERE batch IS NULL LIMIT 1").fetchone() is not None:
                batch = con.execute("SELECT coalesce(max(batch), 0) + 1 FROM batches").fetchone()[0]
                con.execute("UPDATE answers SET batch = ? WHERE batch IS NULL", (batch,))
                con.execute("INSERT INTO batches (batch, written) VALUES (?, 0)", (batch,))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        for (batch,) in con.execute("SELECT batch FROM batches WHERE written = 0 ORDER BY batch").fetchall():
            cursor = con.execute(f"SELECT {', '.join(_COLUMNS)}, run_id FROM answers WHERE batch = ? "
                                 "ORDER BY run_id, request_key", (batch,))
            by_run: dict[str, list[dict]] = {}
            for values in cursor:
                row = dict(zip(_COLUMNS, values[:-1]))
                row["created_at"] = datetime.fromisoformat(row["created_at"])
                by_run.setdefault(values[-1], []).append(row)
            prefix = _store_prefix(warehouse, con)
            for run_id, rows in by_run.items():
                written.append(warehouse.write_shard("llm_cache", rows, run_id=run_id, shard=f"{prefix}b{batch:08d}"))
            con.execute("UPDATE batches SET written = 1 WHERE batch = ?", (batch,))
    return written


def _store_prefix(warehouse, con: sqlite3.Connection) -> str:
    """"" on disk (one store per warehouse); on an object store, where every worker has its own store
    and batch numbers, `s<store id>-`, so two workers' exports never share a shard name."""
    if not getattr(warehouse, "object_store", False):
        return ""
    con.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?)", (uuid.uuid4().hex[:12],))
    (store_id,) = con.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    return f"s{store_id}-"


def paid_by_run(warehouse, run_id: str) -> dict[str, int]:
    """Requests `run_id` paid for, counted over every process of the run (crashed ones too).

    An answer is paid by the run that stored it; a process's own counters lose
    what its killed predecessors paid, this does not. Answers in flight at a
    kill were never stored and are not counted.
    """
    con = connect_store(warehouse)
    try:
        n, prompt, completion = con.execute(
            "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
            "FROM answers WHERE run_id = ?", (run_id,)).fetchone()
    finally:
        con.close()
    return {"requests": n, "prompt_tokens": prompt, "completion_tokens": completion}


def stored_request_keys(warehouse) -> set[str]:
    """Every request key whose answer is on disk (exported to `llm_cache` or not)."""
    con = connect_store(warehouse)
    try:
        return {k for (k,) in con.execute("SELECT request_key FROM answers")}
    finally:
        con.close()


# ------------------------------------------------------------ legacy import
def _import_legacy(warehouse, con: sqlite3.Connection) -> None:
    """Once per warehouse: index the journal-based cache's shards and journals (see the module doc)."""
    with warehouse.lock("llm_cache_export", what="the request cache's import"):
        con.execute("BEGIN IMMEDIATE")
        try:
            if con.execute("SELECT 1 FROM meta WHERE key = 'legacy_imported'").fetchone() is None:
                journals = _import_legacy_rows(warehouse, con)
                con.execute("INSERT INTO meta (key, value) VALUES ('legacy_imported', ?)",
                            (datetime.now(timezone.utc).isoformat(),))
            else:
                journals = []
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        for path in journals:  # their rows are committed above
            path.unlink(missing_ok=True)


def _import_legacy_rows(warehouse, con: sqlite3.Connection) -> list[Path]:
    def insert(row: dict, run_id: str, batch: int | None) -> None:
        created = row["created_at"]
        con.execute(_INSERT_IMPORTED, (
            row["request_key"], run_id, "legacy", row["backend"], row["model"], row["text"],
            row.get("finish_reason"), row.get("prompt_tokens"), row.get("completion_tokens"),
            row.get("latency_s"), row.get("metadata"),
            created.isoformat() if hasattr(created, "isoformat") else str(created), batch))

    # Every exported answer (on an object store: every worker's, which a new worker adopts this way).
    for path in warehouse.run_files("llm_cache", None):  # committed shards, no writer's temporary file
        run_id = path.parent.name.removeprefix("run_id=")
        for row in warehouse.read_files("llm_cache", [path]).select(_COLUMNS).to_pylist():
            insert(row, run_id, _LEGACY_EXPORTED)
    adopted = []
    for path in sorted((Path(getattr(warehouse, "state_dir", warehouse.root)) / LEGACY_JOURNAL_DIR).glob("*.jsonl")):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # an old-version process still writes it; a later import cannot see it: say so in docs
        try:
            run_id = path.stem.rsplit("__", 1)[0]
            for line in path.read_bytes().split(b"\n"):
                try:
                    insert(json.loads(line), run_id, None)
                except (ValueError, KeyError, TypeError):
                    continue  # an empty line, or one torn by a kill: that answer was never stored
            adopted.append(path)
        finally:
            os.close(fd)
    return adopted


_OPEN: dict[tuple[str, str], RequestCache] = {}
_OPEN_LOCK = threading.Lock()


def open_cache(warehouse, run_id: str) -> RequestCache:
    """The process-wide cache for (warehouse, run), shared by every client of the run.

    Clients of different roles (policy, completer, judge) then share one
    connection, and see each other's answers at once.
    """
    key = (str(Path(warehouse.root).resolve()), run_id)
    with _OPEN_LOCK:
        cache = _OPEN.get(key)
        if cache is None or cache._pid != os.getpid():
            cache = _OPEN[key] = RequestCache(warehouse, run_id)
        return cache
