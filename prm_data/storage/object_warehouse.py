"""`ObjectWarehouse`: the `Warehouse` API over an object store (docs/warehouse.md, "Object storage").

`open_warehouse("s3://bucket/prefix")` (or `gs://`, `az://`; prm_data/warehouses.py) returns one. What differs from a local warehouse:

- shards are versions written by the commit protocol (prm_data/storage/commit.py): a data
  object PUT once under a new key, made visible by a marker PUT last; `write_shard` returns
  the data object's URL (a `ShardRef`), `run_files` the current versions' URLs;
- the views name the committed data objects explicitly (a glob would read uncommitted and
  superseded data): every `connect()` lists `tables/` (one request per 1,000 keys) and remakes
  the views of a table whose committed shards changed since this process last looked;
- locks between workers are leases on the store (prm_data/storage/lease.py); the request
  cache's store and its locks are on this worker's own disk (`state_dir`,
  prm_data/storage/roots.py), since nothing else is shared;
- DuckDB reads through the registered fsspec filesystem (s3fs, gcsfs, adlfs; duckdb_fs.py); no `prm.duckdb` is written to the
  store (the duckdb CLI cannot read it offline); `prm-data query` makes a private views file.

`run_id` set (`for_run`): views of the per-run tables hold that run's shards only, as
`RunWarehouse` does on disk.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from prm_data.schema import SHARED_TABLES, TABLES, schema_for, to_table
from prm_data.storage import commit
from prm_data.storage.duckdb_fs import read_only_filesystem
from prm_data.storage.conditional import precondition_failed
from prm_data.storage.lease import Lease
from prm_data.storage.roots import filesystem, local_state_dir, strip
from prm_data.warehouse import (ProcessLock, Warehouse, WarehouseBusy, _SHARD_NAME, process_database,
                                retry_torn_reads, sql_literal)
from prm_data.warehouse_root import object_url

# (root, table, run, column) -> committed version -> the keys it holds (read_keyed); per process.
_KEY_SETS: dict[tuple[str, str, str | None, str], dict] = {}
_KEY_SETS_LOCK = threading.Lock()

# Locks that guard this worker's own files (the request cache's SQLite store), not shared data.
LOCAL_LOCKS = frozenset({"llm_cache_store", "llm_cache_export"})
_GONE = re.compile(r"specified key does not exist|NoSuchKey|FileNotFoundError|No such object|BlobNotFound")
_LAYOUT_DONE: set[tuple[int, str]] = set()
_LAYOUT_LOCK = threading.Lock()


def _parquet_bytes(data: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(data, buf, compression="zstd")
    return buf.getvalue()


class ObjectWarehouse(Warehouse):
    """A warehouse rooted at `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix` (see above)."""

    object_store = True

    def __init__(self, root: str | None = None, run_id: str | None = None):
        self.root = object_url(root if root is not None else os.environ["PRM_DATA_WAREHOUSE"])
        self.fs = filesystem(self.root)
        self._base = strip(self.root)
        self.tables_dir = self.root + "/tables"
        self.db_path = None  # no prm.duckdb on an object store (see the module docstring)
        self.state_dir = local_state_dir(self.root)
        self.run_id = run_id
        if run_id is not None:
            self.shard_path("runs", run_id, "run")  # refuses a run id that is no folder name
        self.schema = "run_" + hashlib.sha256(run_id.encode()).hexdigest()[:16] if run_id else "main"
        self._listing: dict[str, list[str]] = {}
        self._ensure_layout()

    def __reduce__(self):  # a fresh one in the unpickling process: its own filesystem and database
        return ObjectWarehouse, (self.root, self.run_id)

    def for_run(self, run_id: str) -> ObjectWarehouse:
        return self if self.run_id == run_id else ObjectWarehouse(self.root, run_id)

    def _folder(self, table: str, run_id: str) -> str:
        return f"{self._base}/tables/{table}/run_id={run_id}"

    def _anchor(self, table: str) -> str:
        return f"{self.tables_dir}/{table}/_schema.parquet"

    @property
    def instance_id(self) -> str:
        key = f"{self._base}/.instance_id"
        try:
            self.fs.pipe_file(key, os.urandom(16).hex().encode(), mode="create")
        except Exception as exc:  # another worker created it first: use theirs
            if not precondition_failed(exc):
                raise
        return self.fs.cat_file(key).decode().strip()

    # ---------------------------------------------------------------- writing
    def _ensure_layout(self) -> None:
        """Each table's zero-row anchor, checked once per process (15 HEAD requests), created if absent."""
        key = (os.getpid(), self.root)
        with _LAYOUT_LOCK:
            if key in _LAYOUT_DONE:
                return
            for name, schema in TABLES.items():
                anchor = strip(self._anchor(name))
                if not self.fs.exists(anchor):
                    try:
                        self.fs.pipe_file(anchor, _parquet_bytes(schema.empty_table()), mode="create")
                    except Exception as exc:  # another worker created it meanwhile
                        if not precondition_failed(exc):
                            raise
            _LAYOUT_DONE.add(key)

    def shard_path(self, table: str, run_id: str, shard: str) -> str:
        """The shard's logical key (no object has it: versions are `<it>~<gen>~<sha>.parquet`)."""
        schema_for(table)
        if not _SHARD_NAME.match(shard) or not _SHARD_NAME.match(run_id):
            raise ValueError(f"shard and run ids must match {_SHARD_NAME.pattern}: {run_id!r}/{shard!r}")
        return f"{self.tables_dir}/{table}/run_id={run_id}/{shard}"

    def process_lock(self, name: str):
        if name in LOCAL_LOCKS:
            return ProcessLock(self.state_dir / "locks" / f"{name}.lock")
        return Lease(self.fs, f"{self._base}/locks/{name}.lease")

    def lock(self, name: str, wait_s: float = 120.0, what: str | None = None):
        if not _SHARD_NAME.match(name):
            raise ValueError(f"lock names must match {_SHARD_NAME.pattern}: {name!r}")
        lock = self.process_lock(name)
        if not lock.acquire(wait_s):
            raise WarehouseBusy(f"{what or name} is held by another worker ({lock.holder()}) for over "
                                f"{wait_s:.0f} s; lock {getattr(lock, 'key', getattr(lock, 'path', name))}")
        return lock

    def _ref(self, version: commit.Version) -> commit.ShardRef:
        return commit.ShardRef(f"{self.root.split('://')[0]}://{version.data}", version.shard,
                               version.folder.rpartition("/")[2])

    def existing_shard(self, table: str, run_id: str, shard: str) -> str | None:
        self.shard_path(table, run_id, shard)
        version = commit.current_version(self.fs, self._folder(table, run_id), shard)
        return self._ref(version) if version else None

    def has_shard(self, table: str, run_id: str, shard: str) -> bool:
        return self.existing_shard(table, run_id, shard) is not None

    def write_shard(self, table: str, rows: Sequence[dict] | pa.Table, run_id: str,
                    shard: str | None = None) -> commit.ShardRef:
        """Write rows as a new version of one shard and commit it (see prm_data/storage/commit.py)."""
        schema = schema_for(table)
        data = rows.select(schema.names).cast(schema) if isinstance(rows, pa.Table) else to_table(table, list(rows))
        name = shard or os.urandom(16).hex()
        self.shard_path(table, run_id, name)
        version = commit.write_version(self.fs, self._folder(table, run_id), name, _parquet_bytes(data))
        return self._ref(version)

    def delete_run_shards(self, table: str, run_id: str) -> int:
        schema_for(table)
        return commit.delete_all(self.fs, self._folder(table, run_id))

    # ---------------------------------------------------------------- reading
    def committed(self, table: str | None = None, run_id: str | None = None) -> dict[str, list[commit.ShardRef]]:
        """table -> its current shards' data URLs, from one listing of `tables/` (or of one table)."""
        prefix = f"{self._base}/tables" + (f"/{table}" if table else "")
        if table and run_id:
            prefix += f"/run_id={run_id}"
        try:
            keys = self.fs.find(prefix)
        except FileNotFoundError:
            keys = []
        out: dict[str, list[commit.ShardRef]] = {}
        for (folder, _), version in sorted(commit.current_versions(keys).items()):
            name = folder[len(self._base) + len("/tables/"):].split("/", 1)[0]
            out.setdefault(name, []).append(self._ref(version))
        return out

    def run_files(self, table: str, run_id: str | None) -> list[commit.ShardRef]:
        schema_for(table)
        return self.committed(table, run_id).get(table, [])

    def read_files(self, table: str, files: Sequence, where: str = "TRUE",
                   params: Sequence | dict | None = None) -> pa.Table:
        schema = schema_for(table)
        if not files:
            return schema.empty_table()
        paths = ", ".join(sql_literal(p) for p in [self._anchor(table), *files])
        sql = (f"SELECT * FROM read_parquet([{paths}], union_by_name = true, hive_partitioning = false) "
               f"WHERE {where}")
        return self.query(sql, params, views=False).select(schema.names)

    def read_keyed(self, table: str, run_id: str | None, column: str, keys: Sequence[str]) -> pa.Table:
        """As on disk; a version's key never changes, so the key is its own stamp (no stat request)."""
        wanted = set(keys)
        if not wanted:
            return schema_for(table).empty_table()
        with _KEY_SETS_LOCK:
            index = _KEY_SETS.setdefault((str(self.root), table, run_id, column), {})
        holding = []
        for ref in self.run_files(table, run_id):
            if ref not in index:  # a version's key is never rewritten, so what it holds is learnt once
                index[ref] = frozenset(pq.read_table(strip(ref), columns=[column],
                                                     filesystem=self.fs).column(0).to_pylist())
            if not wanted.isdisjoint(index[ref]):
                holding.append(ref)
        where = f"list_contains(?::VARCHAR[], {column})"
        if run_id is None:
            return self.read_files(table, holding, where, [sorted(wanted)])
        return self.read_files(table, holding, f"run_id = ? AND {where}", [run_id, sorted(wanted)])

    def _visible(self, listing: dict[str, list[str]], name: str) -> list[str]:
        files = listing.get(name, [])
        if self.run_id is not None and name not in SHARED_TABLES:
            files = [f for f in files if f.parent.name == f"run_id={self.run_id}"]
        return files

    def table_view_sql(self, name: str) -> str:
        paths = ", ".join(sql_literal(p) for p in [self._anchor(name), *self._visible(self._listing, name)])
        return (f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet([{paths}], "
                "union_by_name = true, hive_partitioning = false)")

    def view_sql(self) -> list[str]:
        self._listing = self.committed()
        return super().view_sql()

    def _database(self):
        db = process_database(self)
        with db.lock:
            if not getattr(db, "fs_registered", False):
                db.con.register_filesystem(self.fs)
                # A version's key is never rewritten (commit.py), so what DuckDB read of it stays true:
                # keep footers and data blocks without asking the store again (a repeated query then
                # costs its one LIST; benchmarks/object_store_scale.py).
                db.con.execute("SET parquet_metadata_cache = true")
                db.con.execute("SET validate_external_file_cache = 'NO_VALIDATION'")
                db.fs_registered = True
        return db

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A cursor whose views hold the shards committed when it was made (one listing; see above)."""
        db = self._database()
        listing = self.committed()
        seen = {t: tuple(self._visible(listing, t)) for t in TABLES}
        with db.lock:
            made = db.run_schemas.get(self.schema)
            if made != seen:
                self._listing = listing
                maker = db.con.cursor()
                try:
                    maker.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                    maker.execute(f'USE "{self.schema}"')
                    if made is None:  # every view, the convenience views (warehouse/*.sql) too
                        stmts = super().view_sql()
                    else:  # only the tables whose committed shards changed (each view reads its files' footers)
                        stmts = [self.table_view_sql(t) for t in TABLES if made.get(t) != seen[t]]
                    for stmt in stmts:
                        maker.execute(stmt)
                finally:
                    maker.close()
                db.run_schemas[self.schema] = seen
        con = db.con.cursor()
        con.execute(f'USE "{self.schema}"')
        return con

    def _read(self, run, views: bool = True, attempts: int = 8):
        """`run(con)` on a fresh cursor, again on a fresh listing while it fails because an object it
        listed is gone (a version deleted after its grace under a query that ran longer)."""
        for attempt in range(attempts):
            con = self.connect() if views else self._database().con.cursor()
            try:
                return retry_torn_reads(lambda: run(con))
            except duckdb.Error as exc:
                if attempt == attempts - 1 or not _GONE.search(str(exc)):
                    raise
            finally:
                con.close()
            time.sleep(0.05 * 2**attempt)

    def query(self, sql: str, params=None, views: bool = True) -> pa.Table:
        return self._read(lambda con: con.sql(sql, params=params or None).to_arrow_table(), views)

    def scalar(self, sql: str, params=None):
        result = self._read(lambda con: con.execute(sql, params or []).fetchall())
        return result[0][0] if result else None

    def row_counts(self) -> dict[str, int]:
        def counts(con):
            names = [r[0] for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = current_schema() "
                "ORDER BY view_name").fetchall()]
            return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchall()[0][0] for n in names}

        return self._read(counts)

    def run_read_only(self, statement: str, params=None) -> pa.Table:
        """`prm-data query`'s statement (already checked read-only) on `read_only_connection()`."""
        def run(con):
            relation = con.sql(statement, params=params or None)
            return pa.table({}) if relation is None else relation.to_arrow_table()

        for attempt in range(8):
            con = self.read_only_connection()
            try:
                return run(con)
            except duckdb.Error as exc:
                if attempt == 7 or not _GONE.search(str(exc)):
                    raise
            finally:
                con.close()
            time.sleep(0.05 * 2**attempt)

    # ------------------------------------------------- views files and read-only queries
    def sync_views(self, wait_s: float = 30.0) -> None:
        """No prm.duckdb is kept on an object store (its views would go stale at the next shard). What a
        writer does here instead, at the end of a run: delete superseded versions past their grace."""
        commit.clean_up_all(self.fs, f"{self._base}/tables")
        return None

    def views_file_fingerprint(self, path: Path | None = None) -> str | None:
        return None

    def write_views_file(self, path: Path) -> Path:
        """A views-only DuckDB file naming the shards committed now (for `prm-data query`)."""
        stmts = self.view_sql()
        con = duckdb.connect(str(path))
        try:
            con.register_filesystem(self.fs)
            for stmt in stmts:
                con.execute(stmt)
        finally:
            con.close()
        return path

    def readable_views_file(self) -> Path:
        import atexit
        import shutil

        folder = Path(tempfile.mkdtemp(prefix="prm-views-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        return self.write_views_file(folder / "prm.duckdb")

    def read_only_connection(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection that can open nothing but the warehouse's objects (docs/warehouse.md)."""
        con = duckdb.connect(str(self.readable_views_file()), read_only=True)
        con.register_filesystem(read_only_filesystem(self.fs, self._base + "/tables/"))
        con.execute("SET disabled_filesystems = 'LocalFileSystem'")
        con.execute("SET lock_configuration = true")
        return con


def warehouse_exists(url: str) -> bool:
    """Whether a warehouse was ever made at object-store root `url` (its `problems` anchor exists)."""
    url = object_url(url)
    return filesystem(url).exists(f"{strip(url)}/tables/problems/_schema.parquet")
