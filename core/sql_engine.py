"""The SQL engines the stages run on: DuckDB (embedded, default) or Spark (``CHURN_ENGINE``).

The stages render their SQL once, in DuckDB's dialect, over relations registered by
name (``register``), and hand it to an engine: DuckDB runs it as is, Spark runs its
translation (``core.spark_engine``). Tables are written day-partitioned
(``<root>/date=YYYY-MM-DD/``) and swapped in atomically by both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Protocol

import duckdb
import pandas as pd

from core.atomic import atomic_dir
from core.partitions import PARTITION_COLUMN, partition_dir
from core.settings import Settings


class Engine(Protocol):
    """What a stage needs from an engine; both implementations take the same SQL."""

    name: str

    def register(self, name: str, paths: Sequence[Path | str], base: Path | None = None) -> None:
        """Make Parquet files (or day directories under ``base``) queryable as ``name``."""

    def register_frame(self, name: str, frame: pd.DataFrame) -> None:
        """Make a (small) pandas frame queryable as ``name``."""

    def rows(self, sql: str) -> list[tuple]:
        """The rows of a (small) query."""

    def frame(self, sql: str) -> pd.DataFrame:
        """A query's result as pandas."""

    def write_table(self, sql: str, root: Path) -> None:
        """Write the query (with a ``date`` column) as the whole table, replacing it atomically."""

    def write_parts(
        self, sqls: Sequence[str], root: Path, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """``write_table`` of the union of queries with disjoint rows, run one after the other
        (each day's rows in a file per query), so no query holds the whole table at once."""

    def write_day(self, sql: str, root: Path, day: date) -> None:
        """Write the query's rows of ``day`` as that day's partition; other days stay."""


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose day boundaries are UTC days, whatever the host's zone."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{settings.duckdb_memory_bytes}B'")
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


def utc_timestamps(values: pd.Series) -> pd.Series:
    """Timestamps as DuckDB and the Parquet tables hold them: UTC, microseconds.

    Spark hands them over naive (session zone UTC) in nanoseconds.
    """
    values = pd.to_datetime(values)
    if values.dt.tz is None:
        values = values.dt.tz_localize("UTC")
    return values.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def day_rows_sql(sql: str, day: date) -> str:
    """The rows of ``day`` without the partition column (the directory name carries it)."""
    return (
        f"SELECT * EXCLUDE ({PARTITION_COLUMN}) FROM ({sql}) AS t "
        f"WHERE {PARTITION_COLUMN} = DATE '{day}'"
    )


class DuckEngine:
    """DuckDB in this process: the embedded default."""

    name = "duckdb"

    def __init__(self, settings: Settings) -> None:
        self.con = connect(settings)

    def register(self, name: str, paths: Sequence[Path | str], base: Path | None = None) -> None:
        files = ", ".join(quote_path(p) for p in paths)
        hive = ", hive_partitioning = true" if base is not None else ""
        # fetchall() completes the statement: DuckDB refuses new work while a result is open.
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM read_parquet([{files}]{hive})"
        ).fetchall()

    def register_frame(self, name: str, frame: pd.DataFrame) -> None:
        self.con.register(name, frame)

    def rows(self, sql: str) -> list[tuple]:
        return self.con.execute(sql).fetchall()

    def frame(self, sql: str) -> pd.DataFrame:
        return self.con.execute(sql).df()

    def write_table(self, sql: str, root: Path) -> None:
        self.write_parts([sql], root)

    def write_parts(
        self, sqls: Sequence[str], root: Path, progress: Callable[[int, int], None] | None = None
    ) -> None:
        with atomic_dir(root) as tmp:
            for i, sql in enumerate(sqls):
                # A file name of its own per part: the parts add files to the same day directories.
                self.con.execute(
                    f"COPY ({sql}) TO {quote_path(tmp)} (FORMAT parquet, PARTITION_BY "
                    f"({PARTITION_COLUMN}), FILENAME_PATTERN 'part{i}_{{i}}', OVERWRITE_OR_IGNORE)"
                ).fetchall()
                if progress:
                    progress(i + 1, len(sqls))

    def write_day(self, sql: str, root: Path, day: date) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # Stage beside the table, not inside it: Feast and the engines read every file under root.
        with atomic_dir(partition_dir(root, day), staging=root.parent) as tmp:
            self.con.execute(
                f"COPY ({day_rows_sql(sql, day)}) TO {quote_path(tmp / 'data_0.parquet')} "
                "(FORMAT parquet)"
            ).fetchall()
