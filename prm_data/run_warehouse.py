"""One run's view of the warehouse: queries about a run that cost what the run holds (issue 21).

The warehouse's views are globs over every run's shards, so a query about one run
(`... WHERE run_id = ?`) still opens the footer of every shard ever written: the
run summary, its report plots and the quality checks took 35 s on a warehouse of
1M earlier step labels, against under 2 s on an empty one. `for_run(warehouse, run_id)`
returns a `RunWarehouse`: the same methods and the same view names, but each view
of a per-run table reads only the run's folder (`tables/<table>/run_id=<run>/`),
and the shared tables (`prm_data.schema.SHARED_TABLES`: problems) stay whole. The
convenience views (warehouse/views.sql: `first_error`, `label_agreement`, ...) are
made over those, so they too hold the run's rows only.

The views live in a schema of their own in this process's database, made once
per run and remade only when a table's run folder gains its first shard (or
loses its last), or a shard of other columns than the table's: a run folder with
no shard yet reads as the table's empty anchor, since DuckDB refuses a glob that
matches no file. Shards written later show without remaking them, the views
being globs. A view reads its files by name (`union_by_name`) only when some
shard's columns differ from the table's (one written by an older version): that
option opens every file's footer at once whenever a query binds the view, about
30 kB a file (80 MB to bind 2,611 step-label shards; a 12,000-problem run writes
4,500). Which shards have the table's exact schema is learnt once per
shard and process (its footer, read again when the file is replaced).
"""

from __future__ import annotations

import hashlib
import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from prm_data.schema import SHARED_TABLES, TABLES
from prm_data.warehouse import Warehouse, sql_literal, process_database


class RunWarehouse(Warehouse):
    """A warehouse whose views of per-run tables hold run `run_id`'s shards only (see above)."""

    def __init__(self, root, run_id: str):
        super().__init__(root)
        self.shard_path("runs", run_id, "run")  # refuses a run id that is no folder name
        self.run_id = run_id
        self.schema = "run_" + hashlib.sha256(run_id.encode()).hexdigest()[:16]
        self._states: dict[str, str] = {}  # table -> its shards' state when the views are (re)made

    def _run_folder(self, table: str):
        return self.tables_dir / table / f"run_id={self.run_id}"

    def _shards_state(self, table: str, db) -> str:
        """`none` (the run wrote no shard of `table` yet), `exact` (every shard has the table's schema
        exactly, as `write_shard` writes it) or `mixed` (one was written with other columns)."""
        expected = TABLES[table]
        state = "none"
        try:
            with os.scandir(self._run_folder(table)) as entries:
                for e in entries:
                    if not e.name.endswith(".parquet") or e.name.startswith("."):
                        continue
                    try:
                        st = e.stat()
                    except FileNotFoundError:
                        continue  # removed since the listing
                    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
                    known = db.file_schemas.get(e.path)
                    if known is None or known[0] != stamp:
                        try:
                            known = db.file_schemas[e.path] = (stamp, pq.read_schema(e.path).equals(expected))
                        except (OSError, pa.ArrowInvalid):
                            continue  # removed, or replaced while read: the next connect sees it whole
                    if not known[1]:
                        return "mixed"
                    state = "exact"
        except FileNotFoundError:
            pass
        return state

    def table_view_sql(self, name: str) -> str:
        if name in SHARED_TABLES:
            return super().table_view_sql(name)
        state = self._states.get(name) or self._shards_state(name, process_database(self))
        sources = [self.tables_dir / name / "_schema.parquet"]
        if state != "none":
            sources.append(self._run_folder(name) / "*.parquet")
        paths = ", ".join(sql_literal(p) for p in sources)
        # union_by_name holds every file's footer at once when a query binds (~30 kB a file);
        # shards of the anchor's exact schema need none of it: the anchor, first, types the view
        union = "true" if state == "mixed" else "false"
        return (f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet([{paths}], "
                f"union_by_name = {union}, hive_partitioning = false)")

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A connection whose views are the run's (see the module docstring). Close it when done."""
        db = process_database(self)
        states = {t: self._shards_state(t, db) for t in TABLES if t not in SHARED_TABLES}
        with db.lock:
            if db.run_schemas.get(self.run_id) != tuple(states.values()):
                self._states = states
                maker = db.con.cursor()
                try:
                    maker.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                    maker.execute(f'USE "{self.schema}"')
                    for stmt in self.view_sql():
                        maker.execute(stmt)
                finally:
                    maker.close()
                db.run_schemas[self.run_id] = tuple(states.values())
        con = db.con.cursor()
        con.execute(f'USE "{self.schema}"')
        return con

    # prm.duckdb, for the duckdb CLI, holds the views of every run, whichever view of the warehouse asks
    def sync_views(self, wait_s: float = 30.0):
        return Warehouse(self.root).sync_views(wait_s)

    def write_views_file(self, path):
        return Warehouse(self.root).write_views_file(path)

    def readable_views_file(self):
        return Warehouse(self.root).readable_views_file()


def for_run(warehouse: Warehouse, run_id: str) -> RunWarehouse:
    """`warehouse` as run `run_id` sees its own work: the same methods, but every view of a per-run
    table holds only that run's shards (the shared tables, `problems`, stay whole), so what a query
    costs grows with the run, not with the runs before it (issue 21)."""
    if isinstance(warehouse, RunWarehouse) and warehouse.run_id == run_id:
        return warehouse
    if getattr(warehouse, "object_store", False):  # prm_data/storage/object_warehouse.py
        return warehouse.for_run(run_id)
    return RunWarehouse(warehouse.root, run_id)
