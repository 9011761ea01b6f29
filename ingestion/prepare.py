"""Validated events → ``user_daily``: one row per user per UTC day, signup to data end.

Every user has a row for every day from the signup day to the last complete
day, active or not, so rolling windows are plain row frames and a user who
went silent still gets rows (with zeros) that say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from churn.settings import Settings
from feature_repo.spec import COURSES_COLUMN, COURSES_SQL, DAILY_COLUMNS
from ingestion import partitions
from ingestion.sql_engine import connect, quote_path

SQL_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR"}


class MissingInputError(FileNotFoundError):
    """A stage's input is missing; the message names the file and the command that makes it."""


@dataclass(frozen=True)
class DailyResult:
    first_day: date
    last_day: date
    rows: int
    path: Path


def validated_paths(settings: Settings) -> tuple[Path, Path]:
    users = settings.validated_dir / "users.parquet"
    events = settings.validated_dir / "events.parquet"
    for path in (users, events):
        if not path.exists():
            raise MissingInputError(f"{path} is missing: run `churn data validate` first")
    return users, events


def user_daily_sql(users: str, events: str, first_day: date, last_day: date) -> str:
    """SQL for the ``user_daily`` rows of days [first_day, last_day], rendered from the spec."""
    aggregates = ",\n        ".join(
        f"CAST({c.sql} AS {SQL_TYPES[c.dtype]}) AS {c.name}" for c in DAILY_COLUMNS
    )
    filled = ",\n    ".join(
        f"coalesce(d.{c.name}, CAST(0 AS {SQL_TYPES[c.dtype]})) AS {c.name}" for c in DAILY_COLUMNS
    )
    return f"""
WITH users AS (
    SELECT user_id, CAST(signup_time AS DATE) AS signup_date
    FROM read_parquet({users})
    WHERE CAST(signup_time AS DATE) <= DATE '{last_day}'
),
spine AS (
    SELECT user_id, CAST(unnest(generate_series(
        greatest(signup_date, DATE '{first_day}'), DATE '{last_day}', INTERVAL 1 DAY
    )) AS DATE) AS date
    FROM users
),
daily AS (
    SELECT
        user_id,
        CAST(event_time AS DATE) AS date,
        {aggregates},
        {COURSES_SQL} AS {COURSES_COLUMN}
    FROM read_parquet({events})
    WHERE event_time >= TIMESTAMPTZ '{first_day} 00:00:00+00'
      AND event_time < TIMESTAMPTZ '{last_day + timedelta(days=1)} 00:00:00+00'
    GROUP BY ALL
)
SELECT
    s.user_id,
    s.date,
    {filled},
    coalesce(d.{COURSES_COLUMN}, []::VARCHAR[]) AS {COURSES_COLUMN}
FROM spine s
LEFT JOIN daily d USING (user_id, date)
"""


def default_last_day(con: duckdb.DuckDBPyConnection, events: str, now: datetime) -> date:
    """The last complete UTC day: yesterday, or the newest event's day if that is earlier."""
    newest = con.execute(f"SELECT max(event_time) FROM read_parquet({events})").fetchone()[0]
    yesterday = now.astimezone(UTC).date() - timedelta(days=1)
    if newest is None:
        raise ValueError(f"{events} has no events")
    return min(newest.astimezone(UTC).date(), yesterday)


def build_user_daily(
    settings: Settings, as_of: date | None = None, now: datetime | None = None
) -> DailyResult:
    """Build ``user_daily``: the whole history, or only day ``as_of`` when given.

    With ``as_of`` the run reads that day's events only and replaces that day's
    partition, so its cost grows with the new data, not with all data.
    """
    users_path, events_path = validated_paths(settings)
    users, events = quote_path(users_path), quote_path(events_path)
    con = connect(settings)
    root = settings.user_daily_path
    if as_of is None:
        last_day = default_last_day(con, events, now or datetime.now(UTC))
        first_day = con.execute(
            f"SELECT CAST(min(signup_time) AS DATE) FROM read_parquet({users})"
        ).fetchone()[0]
        first_day = max(first_day, _first_event_day(con, events))
        partitions.write_table(con, user_daily_sql(users, events, first_day, last_day), root)
    else:
        first_day = last_day = as_of
        partitions.write_day(con, user_daily_sql(users, events, as_of, as_of), root, as_of)
    rows = con.execute(
        f"SELECT count(*) FROM read_parquet({quote_path(partitions.table_glob(root))}, "
        f"hive_partitioning = true) WHERE date BETWEEN DATE '{first_day}' AND DATE '{last_day}'"
    ).fetchone()[0]
    return DailyResult(first_day, last_day, rows, root)


def _first_event_day(con: duckdb.DuckDBPyConnection, events: str) -> date:
    """History starts at the first event: users who signed up earlier get rows from then on."""
    return con.execute(
        f"SELECT CAST(min(event_time) AS DATE) FROM read_parquet({events})"
    ).fetchone()[0]
