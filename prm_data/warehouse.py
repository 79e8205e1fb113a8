"""Parquet shards plus DuckDB views: the warehouse every stage reads and writes.

Layout under the warehouse root (default `warehouse/data/`)::

    tables/<table>/_schema.parquet              zero-row file that fixes the view's types
    tables/<table>/run_id=<run>/<shard>.parquet one shard per task output
    prm.duckdb                                  views only, for the plain duckdb CLI

Shards are written to a hidden temporary name in the same directory, fsynced,
then `os.replace`d onto their final name, so a concurrent reader sees either
the whole shard or none of it. Shard names are chosen by the writer, so a
rerun that writes the same shard replaces it instead of duplicating rows.

Atomic rename keeps every file whole, but a shard *replaced* during a query can
be read half from each version; every read here retries such a torn read
(`retry_torn_reads`, prm_data/process_database.py).

Two processes that must not interleave a check and a write (adding problems,
working on one run) serialize on a `ProcessLock` under `locks/`
(prm_data/process_lock.py).

The `.duckdb` file holds nothing but views (over `read_parquet` globs); it is
rewritten (beside, then renamed) only when the views change, never opened for
writing in place (prm_data/views_file.py). Everything inside the library queries
through this process's one in-memory database carrying the same views, created
once (on the first `connect()`: making them reads every shard's footer), and never
holds a lock on the file. A run's own work reads through `for_run(warehouse,
run_id)`, whose views hold that run's shards only (prm_data/run_warehouse.py), or
names its files (`read_files`, `read_keyed`), so its cost does not grow with
earlier runs (issue 21).
"""

from __future__ import annotations

import glob
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

# ProcessLock, WarehouseBusy, ProcessDatabase, process_database, retry_torn_reads and sql_literal are
# importable from here as before they had modules of their own.
from prm_data.process_database import ProcessDatabase, key_index, process_database, retry_torn_reads, sql_literal
from prm_data.process_lock import ProcessLock, WarehouseBusy
from prm_data.schema import TABLES, schema_for, to_table
from prm_data.warehouse_root import local_root, parse_root

__all__ = ["ProcessDatabase", "ProcessLock", "Warehouse", "WarehouseBusy", "default_root", "iter_batches",
           "load_query", "process_database", "retry_torn_reads", "shard_name", "sql_literal"]

SQL_DIR = Path(__file__).resolve().parents[1] / "warehouse"
QUERIES_DIR = SQL_DIR / "queries"
_INCLUDE = re.compile(r"^--\s*include:\s*(\w+)\s*$", re.M)
_SHARD_NAME = re.compile(r"^[A-Za-z0-9_.=-]{1,200}$")


def load_query(name: str) -> str:
    """The SQL of `warehouse/queries/<name>.sql`, with its `-- include: <fragment>` lines filled in."""
    sql = (QUERIES_DIR / f"{name}.sql").read_text()
    return _INCLUDE.sub(lambda m: (QUERIES_DIR / f"{m.group(1)}.sql").read_text().strip(), sql)


def default_root() -> Path | str:
    """PRM_DATA_WAREHOUSE or warehouse/data: a local Path, or an object-store URL (prm_data/storage/)."""
    return parse_root(os.environ.get("PRM_DATA_WAREHOUSE", "warehouse/data"))


class Warehouse:
    """A warehouse rooted at a directory. Cheap to construct; safe to share paths, not objects.

    An object-store root (`s3://bucket/prefix`) is an `ObjectWarehouse` (prm_data/storage/):
    `prm_data.warehouses.open_warehouse(root)` opens either kind.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = local_root(root if root is not None else default_root()).resolve()
        self.tables_dir = self.root / "tables"
        self.db_path = self.root / "prm.duckdb"
        self.state_dir = self.root  # this machine's own files (the request cache's store)
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
                try:
                    current = pq.read_schema(anchor).equals(schema)
                except (OSError, pa.ArrowInvalid):
                    current = False
                if current:
                    continue
                # written by an older version (a column added since): the views and read_files are typed
                # by the anchor, so it must carry every column; older shards still read (union_by_name)
            table_dir.mkdir(parents=True, exist_ok=True)
            self._atomic_write(schema.empty_table(), anchor)

    def shard_path(self, table: str, run_id: str, shard: str) -> Path:
        schema_for(table)
        if not _SHARD_NAME.match(shard) or not _SHARD_NAME.match(run_id):
            raise ValueError(f"shard and run ids must match {_SHARD_NAME.pattern}: {run_id!r}/{shard!r}")
        return self.tables_dir / table / f"run_id={run_id}" / f"{shard}.parquet"

    def process_lock(self, name: str) -> ProcessLock:
        """The (not yet acquired) warehouse-wide lock `name`; a lease on an object store."""
        return ProcessLock(self.root / "locks" / f"{name}.lock")

    def lock(self, name: str, wait_s: float = 120.0, what: str | None = None) -> ProcessLock:
        """Hold the warehouse-wide lock `name` (use with `with`); WarehouseBusy after `wait_s`.

        For check-then-write sequences that two processes must not interleave.
        """
        if not _SHARD_NAME.match(name):
            raise ValueError(f"lock names must match {_SHARD_NAME.pattern}: {name!r}")
        lock = self.process_lock(name)
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
        holding = [Path(p) for p in key_index(self, table, run_id, column).holding(folders, wanted)]
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
