"""Day-partitioned Parquet tables (``<root>/date=YYYY-MM-DD/*.parquet``).

``user_daily`` and the rolling features are stored one directory per UTC day,
so a daily run adds or replaces one directory and never rewrites history, and
Feast's sources read the root directory as one dataset. The engines
(``core.sql_engine``) write them.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq

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
    """Parquet files of the given days that exist."""
    return [str(f) for day in days for f in sorted(partition_dir(root, day).glob("*.parquet"))]


def count_rows(root: Path, first: date, last: date) -> int:
    """Rows of days [first, last], from the Parquet footers: no engine, no scan."""
    days = [d for d in partition_days(root) if first <= d <= last]
    return sum(pq.ParquetFile(f).metadata.num_rows for f in partition_files(root, days))


def table_glob(root: Path) -> str:
    return os.path.join(root, f"{PARTITION_COLUMN}=*", "*.parquet")
