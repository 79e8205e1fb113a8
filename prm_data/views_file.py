"""prm.duckdb: the views-only DuckDB file that the duckdb CLI and `prm-data query` open.

Only writers touch it, and only when its views differ from the code's: a
fingerprint of the views' SQL (`Warehouse.views_fingerprint`) is stored as the
comment of its `problems` view. New shards need no refresh, since the views are
globs. A refresh takes the warehouse lock `views`, builds a complete new file
beside the old one and renames it onto `prm.duckdb`: the file is never opened
for writing in place, so no reader ever waits for a writer, nor a writer for a
reader; a session that has the old file open keeps reading it, the next open
gets the new one (issue 12).

Readers (`readable_views_file`) open prm.duckdb read-only when its views are
current, and otherwise (never written, written by another version, or held for
writing by a duckdb session) a private copy of the current views, made once per
process in a temporary folder that is removed at exit.

Storage version: DuckDB 2.0 writes storage version 69 by default, which the
duckdb CLI from PyPI (`duckdb-cli` 1.5.x, reading 64 to 68) refuses. The file is
attached with `STORAGE_VERSION 'v1.4.0'` (67), which every duckdb from 1.4 on
reads; views need nothing newer.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb

VIEWS_STORAGE_VERSION = "v1.4.0"
_COMMENT = "prm-data views "
_PRIVATE: dict[tuple[str, str], Path] = {}


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def stored_fingerprint(path: Path) -> str | None:
    """The fingerprint stored in a views file (None: missing, unreadable or held for writing)."""
    if not path.exists():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None
    try:
        row = con.execute("SELECT comment FROM duckdb_views() WHERE view_name = 'problems' "
                          "AND NOT internal").fetchone()
    finally:
        con.close()
    return row[0].removeprefix(_COMMENT) if row and row[0] else None


def sync_views(warehouse, wait_s: float = 30.0) -> Path:
    """Make prm.duckdb hold the current views. Writers only; WarehouseBusy if another writer
    holds the lock `views` for over `wait_s` (it never waits for a reader)."""
    fingerprint = warehouse.views_fingerprint()
    if stored_fingerprint(warehouse.db_path) == fingerprint:
        return warehouse.db_path
    with warehouse.lock("views", wait_s=wait_s, what="refreshing the views in prm.duckdb"):
        if stored_fingerprint(warehouse.db_path) != fingerprint:
            write_views_file(warehouse, warehouse.db_path)
    return warehouse.db_path


def write_views_file(warehouse, path: Path) -> Path:
    """Write a views-only DuckDB file at `path` atomically (built beside it, fsynced, renamed)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"ATTACH {_literal(tmp)} AS views_file (STORAGE_VERSION '{VIEWS_STORAGE_VERSION}')")
            con.execute("USE views_file")
            for stmt in warehouse.view_sql():
                con.execute(stmt)
            con.execute(f"COMMENT ON VIEW problems IS '{_COMMENT}{warehouse.views_fingerprint()}'")
            con.execute("USE memory")
            con.execute("DETACH views_file")  # checkpoints: the file is whole, no .wal beside it
        finally:
            con.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        # A duckdb session that had the old file open for writing may have left its write-ahead
        # log beside it; it belongs to the replaced file and would not replay onto this one.
        path.with_name(path.name + ".wal").unlink(missing_ok=True)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return path


def readable_views_file(warehouse) -> Path:
    """prm.duckdb when its views are current, else this process's private copy (see above)."""
    fingerprint = warehouse.views_fingerprint()
    if stored_fingerprint(warehouse.db_path) == fingerprint:
        return warehouse.db_path
    key = (str(warehouse.root), fingerprint)
    if key not in _PRIVATE:
        import atexit
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="prm-views-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _PRIVATE[key] = write_views_file(warehouse, folder / "prm.duckdb")
    return _PRIVATE[key]
