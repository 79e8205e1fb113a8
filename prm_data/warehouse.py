"""Parquet shards plus DuckDB views: the warehouse every stage reads and writes.

Layout under the warehouse root (default `warehouse/data/`)::

    tables/<table>/_schema.parquet              zero-row file that fixes the view's types
    tables/<table>/run_id=<run>/<shard>.parquet one shard per task output
    prm.duckdb                                  views only, for the plain duckdb CLI

Shards are written to a hidden temporary name in the same directory, fsynced,
then `os.replace`d onto their final name, so a concurrent reader sees either
the whole shard or none of it. Shard names are chosen by the writer, so a
rerun that writes the same shard replaces it instead of duplicating rows.

Atomic rename keeps every file whole, but a reader opens a Parquet file more
than once per query (DuckDB reads the schema at bind time and the data at scan
time through new handles; pyarrow does the same), so a shard *replaced* during
a query is read half from each version and the query fails ("TProtocolException:
Invalid data"). Appending new shards never does this; replacing one (a stage
rerun) can, so every read here retries such a torn read (`retry_torn_reads`).

Two processes that must not interleave a check and a write (adding problems,
working on one run) serialize on a `ProcessLock` under `locks/`.

The `.duckdb` file holds nothing but views (over `read_parquet` globs); it is
rewritten (beside, then renamed) only when the views change, never opened for
writing in place (prm_data/views_file.py). Everything inside the library queries
through this process's one in-memory database carrying the same views, created
once (on the first `connect()`: making them reads every shard's footer), and never
holds a lock on the file. A run's own work reads through `for_run(run_id)`, whose
views hold that run's shards only (prm_data/run_warehouse.py), or names its files
(`read_files`, `read_keyed`), so its cost does not grow with earlier runs (issue 21).
"""

from __future__ import annotations

import glob
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from prm_data.schema import TABLES, schema_for, to_table
from prm_data.shard_keys import ShardKeys

SQL_DIR = Path(__file__).resolve().parents[1] / "warehouse"
QUERIES_DIR = SQL_DIR / "queries"
_INCLUDE = re.compile(r"^--\s*include:\s*(\w+)\s*$", re.M)
_SHARD_NAME = re.compile(r"^[A-Za-z0-9_.=-]{1,200}$")
# What a query says when a shard was replaced or removed between its reads of the file.
_TORN_READ = re.compile(r"TProtocolException|No magic bytes|too small to be a Parquet file|"
                        r"Cannot open file \"[^\"]*\.parquet\"|No such file or directory")


def load_query(name: str) -> str:
    """The SQL of `warehouse/queries/<name>.sql`, with its `-- include: <fragment>` lines filled in."""
    sql = (QUERIES_DIR / f"{name}.sql").read_text()
    return _INCLUDE.sub(lambda m: (QUERIES_DIR / f"{m.group(1)}.sql").read_text().strip(), sql)


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


def default_root() -> Path:
    return Path(os.environ.get("PRM_DATA_WAREHOUSE", "warehouse/data"))


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
    for `Warehouse.for_run` (prm_data/run_warehouse.py).
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


def _key_index(warehouse: "Warehouse", table: str, run_id: str | None, column: str) -> ShardKeys:
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


def process_database(warehouse: "Warehouse") -> ProcessDatabase:
    """This process's in-memory database for the warehouse, created (bare) on first use.

    Keyed by pid too: a forked child must not use its parent's database.
    """
    key = (os.getpid(), str(warehouse.root))
    with _DATABASES_LOCK:
        db = _DATABASES.get(key)
        if db is None:
            db = _DATABASES[key] = ProcessDatabase()
        return db


class Warehouse:
    """A warehouse rooted at a directory. Cheap to construct; safe to share paths, not objects."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root if root is not None else default_root()).resolve()
        self.tables_dir = self.root / "tables"
        self.db_path = self.root / "prm.duckdb"
        self._ensure_layout()

    @property
    def instance_id(self) -> str:
        """A random id made when this warehouse folder was first used.

        Orchestrator caches key on it, so results cached for a warehouse that
        was since deleted and recreated are not taken for finished work.
        """
        path = self.root / ".instance_id"
        if not path.exists():
            tmp = path.with_name(f".instance_id.{uuid.uuid4().hex}.tmp")
            tmp.write_text(uuid.uuid4().hex)
            try:
                os.link(tmp, path)  # atomic create-if-absent: concurrent first users agree on one id
            except FileExistsError:
                pass  # another process created it first; use theirs
            finally:
                tmp.unlink()
        return path.read_text().strip()

    # ---------------------------------------------------------------- writing
    def _ensure_layout(self) -> None:
        for name, schema in TABLES.items():
            table_dir = self.tables_dir / name
            anchor = table_dir / "_schema.parquet"
            if anchor.exists():
                continue
            table_dir.mkdir(parents=True, exist_ok=True)
            self._atomic_write(schema.empty_table(), anchor)

    def shard_path(self, table: str, run_id: str, shard: str) -> Path:
        schema_for(table)
        if not _SHARD_NAME.match(shard) or not _SHARD_NAME.match(run_id):
            raise ValueError(f"shard and run ids must match {_SHARD_NAME.pattern}: {run_id!r}/{shard!r}")
        return self.tables_dir / table / f"run_id={run_id}" / f"{shard}.parquet"

    def lock(self, name: str, wait_s: float = 120.0, what: str | None = None) -> ProcessLock:
        """Hold the warehouse-wide lock `name` (use with `with`); WarehouseBusy after `wait_s`.

        For check-then-write sequences that two processes must not interleave.
        """
        if not _SHARD_NAME.match(name):
            raise ValueError(f"lock names must match {_SHARD_NAME.pattern}: {name!r}")
        lock = ProcessLock(self.root / "locks" / f"{name}.lock")
        if not lock.acquire(wait_s):
            raise WarehouseBusy(f"{what or name} is held by another process ({lock.holder()}) for over "
                                f"{wait_s:.0f} s; lock file {lock.path}")
        return lock

    def has_shard(self, table: str, run_id: str, shard: str) -> bool:
        return self.shard_path(table, run_id, shard).exists()

    def existing_shard(self, table: str, run_id: str, shard: str) -> str | None:
        """The shard's path if it was already written (a stage's "done" marker), else None."""
        path = self.shard_path(table, run_id, shard)
        return str(path) if path.exists() else None

    def write_shard(
        self,
        table: str,
        rows: Sequence[dict] | pa.Table,
        run_id: str,
        shard: str | None = None,
    ) -> Path:
        """Write rows as one shard of `table`, atomically. Returns the shard's path.

        `rows` are dicts validated against the table's schema, or a pyarrow
        table that is cast to it. A shard with the same name is replaced.
        """
        schema = schema_for(table)
        if isinstance(rows, pa.Table):
            data = rows.select(schema.names).cast(schema)
        else:
            data = to_table(table, list(rows))
        path = self.shard_path(table, run_id, shard or uuid.uuid4().hex)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._atomic_write(data, path)
        return path

    @staticmethod
    def _atomic_write(data: pa.Table, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                pq.write_table(data, fh, compression="zstd")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    def delete_run_shards(self, table: str, run_id: str) -> int:
        """Remove every shard a run wrote to a table (used to redo a stage)."""
        d = self.tables_dir / table / f"run_id={run_id}"
        n = 0
        if d.exists():
            for p in d.glob("*.parquet"):
                p.unlink()
                n += 1
        return n

    # ---------------------------------------------------------------- reading
    def table_view_sql(self, name: str) -> str:
        """The CREATE VIEW statement of table `name`: every shard of every run, typed by its anchor."""
        glob = self.tables_dir / name / "**" / "*.parquet"
        return (f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet("
                f"{sql_literal(glob)}, union_by_name = true, hive_partitioning = false)")

    def view_sql(self) -> list[str]:
        """CREATE VIEW statements: one per table, then the convenience views."""
        stmts = [self.table_view_sql(name) for name in TABLES]
        for sql_file in sorted(SQL_DIR.glob("*.sql")):
            body = "\n".join(l for l in sql_file.read_text().splitlines() if not l.lstrip().startswith("--"))
            stmts.extend(s.strip() for s in body.split(";") if s.strip())
        return stmts

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A connection carrying every view; holds no file lock. Close it when done.

        It is a cursor on this process's one in-memory database for the warehouse, whose
        views are created once (issue 21): the views are globs, so shards written later
        show without refreshing them, and a new connection costs microseconds, not a
        view per table.
        """
        db = process_database(self)
        with db.lock:
            if not db.views_made:
                for stmt in self.view_sql():
                    db.con.execute(stmt)
                db.views_made = True
        return db.con.cursor()

    def query(self, sql: str, params: Sequence | dict | None = None, views: bool = True) -> pa.Table:
        """Run a query (parameterized with `?` or `$name`) and return an Arrow table; `views=False`: on a
        connection without the views (a query that names its files), which never has to make them."""
        con = self.connect() if views else process_database(self).con.cursor()
        try:
            return retry_torn_reads(lambda: con.sql(sql, params=params or None).to_arrow_table())
        finally:
            con.close()

    def rows(self, sql: str, params: Sequence | dict | None = None) -> list[dict]:
        return self.query(sql, params).to_pylist()

    def scalar(self, sql: str, params: Sequence | dict | None = None):
        con = self.connect()
        try:
            result = retry_torn_reads(lambda: con.execute(sql, params or []).fetchall())
        finally:
            con.close()
        return result[0][0] if result else None

    def run_files(self, table: str, run_id: str | None) -> list[Path]:
        """The finished shards one run (None: every run) wrote to `table` (not writers' temporary files)."""
        schema_for(table)
        pattern = f"run_id={glob.escape(run_id)}/*.parquet" if run_id is not None else "run_id=*/*.parquet"
        return sorted(p for p in (self.tables_dir / table).glob(pattern) if not p.name.startswith("."))

    def read_files(self, table: str, files: Sequence[Path], where: str = "TRUE",
                   params: Sequence | dict | None = None) -> pa.Table:
        """`SELECT * FROM <these shards of table> WHERE <where>`: a scan that touches only `files`.

        Typed by the table's schema like the views are; no file at all gives no row.
        """
        schema = schema_for(table)
        if not files:
            return schema.empty_table()
        anchor = self.tables_dir / table / "_schema.parquet"
        paths = ", ".join(sql_literal(p) for p in [anchor, *files])
        sql = (f"SELECT * FROM read_parquet([{paths}], union_by_name = true, hive_partitioning = false) "
               f"WHERE {where}")
        return self.query(sql, params, views=False).select(schema.names)

    def read_keyed(self, table: str, run_id: str | None, column: str, keys: Sequence[str]) -> pa.Table:
        """Rows of run `run_id`'s (None: every run's) shards of `table` whose `column` is one of `keys`.

        Only the shards that hold one of the keys are scanned. Which keys a shard holds is
        learnt once per shard and process (reading that one column; re-read when the file
        is replaced), so looking up every shard of a run costs one pass over the run in
        all, not a scan of the whole run per lookup (prm_data/shard_keys.py).
        """
        wanted = set(keys)
        if not wanted:
            return schema_for(table).empty_table()
        table_dir = self.shard_path(table, run_id or "any", "any").parents[1]  # checks the names
        if run_id is not None:
            folders = [str(table_dir / f"run_id={run_id}")]
        else:
            with os.scandir(table_dir) as entries:
                folders = [e.path for e in entries if e.name.startswith("run_id=") and e.is_dir()]
        holding = [Path(p) for p in _key_index(self, table, run_id, column).holding(folders, wanted)]
        if run_id is None:
            return self.read_files(table, holding, f"list_contains(?::VARCHAR[], {column})", [sorted(wanted)])
        return self.read_files(table, holding, f"run_id = ? AND list_contains(?::VARCHAR[], {column})",
                               [run_id, sorted(wanted)])

    # ------------------------------------------------- the views file, prm.duckdb
    def views_fingerprint(self) -> str:
        """A hash of the views' SQL: prm.duckdb is rewritten only when it changes (see prm_data/views_file.py)."""
        import hashlib

        return hashlib.sha256("\n;\n".join(self.view_sql()).encode()).hexdigest()[:16]

    def views_file_fingerprint(self, path: Path | None = None) -> str | None:
        from prm_data.views_file import stored_fingerprint

        return stored_fingerprint(path or self.db_path)

    def sync_views(self, wait_s: float = 30.0) -> Path:
        """Make prm.duckdb hold the current views (writers only; see prm_data/views_file.py)."""
        from prm_data.views_file import sync_views

        return sync_views(self, wait_s)

    def write_views_file(self, path: Path) -> Path:
        from prm_data.views_file import write_views_file

        return write_views_file(self, path)

    def readable_views_file(self) -> Path:
        """A views file to open read-only without writing prm.duckdb (see prm_data/views_file.py)."""
        from prm_data.views_file import readable_views_file

        return readable_views_file(self)

    def row_counts(self) -> dict[str, int]:
        con = self.connect()
        try:
            names = [r[0] for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = current_schema() "
                "ORDER BY view_name"
            ).fetchall()]
            return {n: retry_torn_reads(lambda: con.execute(f'SELECT count(*) FROM "{n}"').fetchall())[0][0]
                    for n in names}
        finally:
            con.close()


def shard_name(*parts: object) -> str:
    """A deterministic, filesystem-safe shard name from its identifying parts."""
    import hashlib

    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:20]
    return h


def iter_batches(items: Iterable, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
