"""The engine the settings name: DuckDB in this process, or Spark.

Its own module so that the DuckDB engine and the Spark engine (which reuses the DuckDB
engine's SQL helpers) never import each other.
"""

from __future__ import annotations

from core.settings import Settings
from core.sql_engine import DuckEngine, Engine


def open_engine(settings: Settings) -> Engine:
    """The engine ``settings.engine`` names (Spark is imported only when asked for)."""
    if settings.engine == "spark":
        from core.spark_engine import SparkEngine

        return SparkEngine(settings)
    return DuckEngine(settings)
