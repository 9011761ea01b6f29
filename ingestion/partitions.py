"""Day-partitioned Parquet tables (``<root>/date=YYYY-MM-DD/*.parquet``).

``user_daily`` and the rolling features are stored one directory per UTC day,
so a daily run adds or replaces one directory and never rewrites history, and
Feast's FileSource reads the root directory as one dataset.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import duckdb

from churn.atomic import atomic_dir
from ingestion.sql_engine import quote_path

PARTITION_COLUMN = "date"


def partition_dir(root: Path, day: date) -> Path:
    return root / f"{PARTITION_COLUMN}={day.isoformat()}"


def partition_days(root: Path) -> list[date]:
    """The days present under ``root``, sorted; empty when the table does not exist."""
    if not root.is_dir():
        return []
    prefix = f"{PARTITION_COLUMN}="
    return sorted(
        date.fromisoformat(p.name[len(prefix) :])
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(prefix)
    )


def partition_files(root: Path, days: list[date]) -> list[str]:
    """Parquet files of the given days that exist (a SQL ``read_parquet`` list)."""
    return [str(f) for day in days for f in sorted(partition_dir(root, day).glob("*.parquet"))]


def write_table(con: duckdb.DuckDBPyConnection, query: str, root: Path) -> None:
    """Write ``query`` (which has a ``date`` column) as the whole table, replacing it atomically."""
    with atomic_dir(root) as tmp:
        con.execute(
            f"COPY ({query}) TO {quote_path(tmp)} "
            f"(FORMAT parquet, PARTITION_BY ({PARTITION_COLUMN}), OVERWRITE_OR_IGNORE)"
        )


def write_day(con: duckdb.DuckDBPyConnection, query: str, root: Path, day: date) -> None:
    """Write the rows of ``query`` (which has a ``date`` column) as day ``day``'s partition.

    Re-running a day replaces that day only; other days are not touched.
    """
    root.mkdir(parents=True, exist_ok=True)
    rows = f"SELECT * EXCLUDE ({PARTITION_COLUMN}) FROM ({query}) WHERE {PARTITION_COLUMN} = DATE '{day}'"
    # Stage beside the table, not inside it: Feast and DuckDB read every file under root.
    with atomic_dir(partition_dir(root, day), staging=root.parent) as tmp:
        con.execute(f"COPY ({rows}) TO {quote_path(tmp / 'data_0.parquet')} (FORMAT parquet)")


def table_glob(root: Path) -> str:
    return os.path.join(root, f"{PARTITION_COLUMN}=*", "*.parquet")
