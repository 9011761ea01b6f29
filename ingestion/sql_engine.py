"""The DuckDB connection every SQL stage uses: UTC session, capped memory, spill dir."""

from __future__ import annotations

import duckdb

from churn.settings import Settings


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose day boundaries are UTC days, whatever the host's zone."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{settings.duckdb_memory_limit}'")
    spill = settings.data_dir / ".duckdb_tmp"
    spill.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET preserve_insertion_order = false")
    if settings.duckdb_threads:
        con.execute(f"SET threads = {settings.duckdb_threads}")
    return con


def quote_path(path: object) -> str:
    """A path as a single-quoted SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"
