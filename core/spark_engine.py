"""The Spark engine (``CHURN_ENGINE=spark``): the stages' SQL, translated, on a SparkSession.

The SQL is the one the stages render from the feature specification, in DuckDB's
dialect; ``to_spark`` translates it with sqlglot and refuses anything sqlglot cannot
translate, rather than running a query with a part silently dropped. One session per
process, shared with Feast's Spark offline store (it takes the active session).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import pandas as pd
import sqlglot
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import TimestampType
from sqlglot.errors import ErrorLevel

from core.atomic import atomic_dir
from core.partitions import PARTITION_COLUMN, partition_dir
from core.settings import Settings
from core.sql_engine import day_rows_sql, utc_timestamps

# Feast's Spark store turns this on for its own queries; our backquotes are names, not regexes.
_QUOTED_REGEX = "spark.sql.parser.quotedRegexColumnNames"


def to_spark(sql: str) -> str:
    """DuckDB SQL as Spark SQL; raises ``sqlglot.errors.UnsupportedError`` naming what
    does not translate."""
    return sqlglot.transpile(sql, read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE)[
        0
    ]


def launched_by_spark_submit() -> bool:
    """True under ``spark-submit`` (or the Spark operator): the master and resources are theirs."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def spark_conf(settings: Settings) -> dict[str, str]:
    """The Spark configuration of every session: ours and Feast's Spark offline store.

    UTC day boundaries whatever the host's zone; Parquet timestamps as INT64
    microseconds (Spark's INT96 default reads back as naive in other tools); no
    ``_SUCCESS`` or ``.crc`` files beside the data, which other readers would scan.
    """
    return {
        "spark.app.name": "churn",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
    }


def spark_session(settings: Settings) -> SparkSession:
    """The process's SparkSession, started with the settings' configuration if none runs.

    Local mode needs the executors' Python to be this one (with pandas and the
    model's packages) and a loopback address; under spark-submit the cluster's
    configuration rules and only the settings' SQL options are added.
    """
    builder = SparkSession.builder
    if not launched_by_spark_submit():
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if settings.spark_master.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.master(settings.spark_master)
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def utc_frame(frame: DataFrame) -> pd.DataFrame:
    """``frame`` as pandas, its timestamps as DuckDB gives them (``utc_timestamps``)."""
    out: pd.DataFrame = frame.toPandas()
    for field in frame.schema.fields:
        if isinstance(field.dataType, TimestampType):
            out[field.name] = utc_timestamps(out[field.name])
    return out


class SparkEngine:
    """The stages' SQL on Spark, reading and writing the same Parquet layout as DuckDB."""

    name = "spark"

    def __init__(self, settings: Settings) -> None:
        self.spark = spark_session(settings)

    def register(self, name: str, paths: Sequence[Path | str], base: Path | None = None) -> None:
        reader = self.spark.read
        if base is not None:
            # Partition discovery from the table root: the date=… directories give `date`.
            reader = reader.option("basePath", str(base))
        reader.parquet(*map(str, paths)).createOrReplaceTempView(name)

    def register_frame(self, name: str, frame: pd.DataFrame) -> None:
        self.spark.createDataFrame(frame).createOrReplaceTempView(name)

    def sql(self, sql: str) -> DataFrame:
        """A Spark DataFrame of DuckDB-dialect ``sql``."""
        self.spark.conf.set(_QUOTED_REGEX, "false")
        return self.spark.sql(to_spark(sql))

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(row) for row in self.sql(sql).collect()]

    def frame(self, sql: str) -> pd.DataFrame:
        return utc_frame(self.sql(sql))

    def write_table(self, sql: str, root: Path) -> None:
        self.write_parts([sql], root)

    def write_parts(
        self, sqls: Sequence[str], root: Path, progress: Callable[[int, int], None] | None = None
    ) -> None:
        with atomic_dir(root) as tmp:
            for i, sql in enumerate(sqls):
                # Rows of a day gathered in one task: a file per day, not one per task and day.
                rows = self.sql(sql).repartition(PARTITION_COLUMN)
                rows.write.mode("append").partitionBy(PARTITION_COLUMN).parquet(str(tmp))
                if progress:
                    progress(i + 1, len(sqls))

    def write_day(self, sql: str, root: Path, day: date) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # Stage beside the table, not inside it: Feast and the engines read every file under root.
        # As many files as the last stage has tasks (adaptive execution merges small ones):
        # coalesce(1) would run that whole stage, windows included, in one task.
        with atomic_dir(partition_dir(root, day), staging=root.parent) as tmp:
            self.sql(day_rows_sql(sql, day)).write.mode("overwrite").parquet(str(tmp))
