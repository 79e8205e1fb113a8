"""Read-only SQL over the warehouse: what `prm-data query` runs, checked twice.

1. Before anything runs, DuckDB's own parser splits the text
   (`extract_statements`) and every statement's type must be a read: SELECT
   (which includes SHOW, DESCRIBE, SUMMARIZE and FROM-first queries), EXPLAIN of
   a read, or an informational PRAGMA. COPY, INSERT, CREATE, ATTACH, INSTALL,
   LOAD, SET, EXPORT, CALL, ... are refused with `ReadOnlyViolation`.
   `EXPLAIN ANALYZE` executes its statement, so the explained statement is
   checked too.
2. The query then runs on a connection that cannot write: the views-only
   `prm.duckdb` file opened with `read_only=True` (no catalog writes; nor does
   the query path ever open it for writing, so it never locks a reader out), with
   file access confined to the warehouse's `tables/` directory
   (`allowed_directories` + `enable_external_access=false`, which stops
   `COPY ... TO` anywhere else) and the configuration locked.

Why the file and not an in-memory connection: an in-memory database is always
writable (temp tables, ATTACH of a new file), while a read-only file
connection refuses catalog writes in the engine itself, and it is the very
file a person opens with the duckdb CLI, so both see the same views.
"""

from __future__ import annotations

import os
import re
import time

import duckdb
import pyarrow as pa

from prm_data.warehouse import Warehouse, WarehouseBusy, retry_torn_reads

ST = duckdb.StatementType
READ_TYPES = {ST.SELECT, ST.EXPLAIN, ST.PRAGMA}
INFO_PRAGMAS = {
    "table_info", "show", "show_tables", "show_tables_expanded", "show_databases", "database_list",
    "database_size", "storage_info", "version", "platform", "functions", "collations",
    "metadata_info", "user_agent",
}
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?:ANALY[SZ]E\s+|\([^)]*\)\s*)?", re.I)
_PRAGMA = re.compile(r"^\s*PRAGMA\s+([A-Za-z_]+)\s*(\(|;|$)", re.I)


class ReadOnlyViolation(ValueError):
    """The SQL would write (or could not be shown to only read)."""


def _statement_name(statement) -> str:
    """The statement's leading keyword as written (INSTALL, PIVOT), else DuckDB's type name."""
    words = statement.query.split(None, 1)
    if words and words[0].isalpha():
        return words[0].upper()
    return statement.type.name


def check_read_only(sql: str) -> str:
    """The one read statement in `sql`, or ReadOnlyViolation saying why it is refused.

    A syntax error is raised as duckdb.ParserException (it is not a write).
    """
    parser = duckdb.connect(":memory:")
    try:
        statements = parser.extract_statements(sql)
        if not statements:
            raise ReadOnlyViolation("no SQL statement given")
        if len(statements) > 1:
            raise ReadOnlyViolation(f"{len(statements)} statements given; run one statement at a time")
        _check_statement(parser, statements[0])
        return statements[0].query
    finally:
        parser.close()


def _check_statement(parser, statement, depth: int = 0) -> None:
    kind = statement.type
    text = statement.query
    if kind not in READ_TYPES:
        raise ReadOnlyViolation(
            f"{_statement_name(statement)} statements are not allowed: prm-data query is read-only "
            "(allowed: SELECT, WITH, FROM, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN, informational PRAGMA)")
    if kind == ST.PRAGMA:
        m = _PRAGMA.match(text)
        if not m or m.group(1).lower() not in INFO_PRAGMAS:
            raise ReadOnlyViolation(f"only informational PRAGMAs are allowed ({', '.join(sorted(INFO_PRAGMAS))})")
    if kind == ST.EXPLAIN:
        # EXPLAIN ANALYZE runs the statement it explains, so that statement must be a read too.
        m = _EXPLAIN.match(text)
        if not m or depth > 0:
            raise ReadOnlyViolation("write EXPLAIN as `EXPLAIN [ANALYZE] <query>` so the query can be checked")
        try:
            inner = parser.extract_statements(text[m.end():])
        except duckdb.ParserException as exc:
            raise ReadOnlyViolation(f"cannot check the statement after EXPLAIN ({exc})") from exc
        if len(inner) != 1 or inner[0].type == ST.EXPLAIN:
            raise ReadOnlyViolation("EXPLAIN must be followed by exactly one query")
        _check_statement(parser, inner[0], depth + 1)


def read_only_connection(warehouse: Warehouse, open_wait_s: float = 2.0) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the views file that cannot write, and writes nothing itself.

    Reading never refreshes prm.duckdb (only writers do, under the warehouse's lock,
    see Warehouse.sync_views), so readers never lock each other out; where the file's
    views are missing or stale, a private copy is opened instead
    (Warehouse.readable_views_file).
    """
    if getattr(warehouse, "object_store", False):  # prm_data/storage/object_warehouse.py
        return warehouse.read_only_connection()
    deadline = time.monotonic() + open_wait_s
    while True:  # held for writing only by a duckdb session opened without -readonly
        path = warehouse.readable_views_file()
        try:
            con = duckdb.connect(str(path), read_only=True)
            break
        except duckdb.IOException as exc:
            if time.monotonic() >= deadline:
                raise WarehouseBusy(f"{path} is open for writing by another process ({exc}); "
                                    "close that duckdb session and retry") from exc
            time.sleep(0.05)
    con.execute("SET allowed_directories = ?", [[str(warehouse.tables_dir) + os.sep]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def run_read_only(warehouse: Warehouse, sql: str, params: list | None = None) -> pa.Table:
    """Check `sql`, run it read-only, return the result as an Arrow table."""
    statement = check_read_only(sql)
    if getattr(warehouse, "object_store", False):  # re-lists on a retry (prm_data/storage/object_warehouse.py)
        return warehouse.run_read_only(statement, params)
    con = read_only_connection(warehouse)
    try:
        def run() -> pa.Table:
            relation = con.sql(statement, params=params or None)
            return pa.table({}) if relation is None else relation.to_arrow_table()

        return retry_torn_reads(run)
    finally:
        con.close()
