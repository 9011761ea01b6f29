"""The tables every stage reads, by name: the validated inputs, ``user_daily``, their SQL types,
how a day-partitioned table is registered on an engine, and the error a missing input raises."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from core import partitions
from core.settings import Settings
from core.sql_engine import Engine

SQL_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR"}
# The relations the SQL reads, registered by name on the engine.
USERS, EVENTS, USER_DAILY = "validated_users", "validated_events", "user_daily"


class MissingInputError(FileNotFoundError):
    """A stage's input is missing; the message names the file and the command that makes it."""


def validated_event_files(settings: Settings) -> list[Path]:
    """The validated events' files, oldest day first; the single ``validated/events.parquet``
    of data dirs validated before events were kept by day, until the next validation."""
    root = settings.validated_events_path
    files = [Path(f) for f in partitions.partition_files(root, partitions.partition_days(root))]
    legacy = settings.validated_events_legacy_path
    return files or ([legacy] if legacy.is_file() else [])


def validated_paths(settings: Settings) -> tuple[Path, list[Path]]:
    """The validated users file and events files; MissingInputError names what to run."""
    users, events = settings.validated_users_path, validated_event_files(settings)
    for path, there in ((users, users.exists()), (settings.validated_events_path, bool(events))):
        if not there:
            raise MissingInputError(f"{path} is missing: run `churn data validate` first")
    return users, events


def register_validated(engine: Engine, settings: Settings) -> None:
    """The validated users and events as ``USERS`` and ``EVENTS`` (errors say what to run).

    The events are registered as files, not as a partitioned table: a time filter skips
    days and row groups by their statistics (DuckDB also shows the day as ``date``)."""
    users, events = validated_paths(settings)
    engine.register(USERS, [users])
    engine.register(EVENTS, events)


def register_table(engine: Engine, name: str, root: Path, days: list[date]) -> None:
    """Days ``days`` of a day-partitioned table as ``name``, with its ``date`` column."""
    engine.register(name, partitions.partition_files(root, days), base=root)
