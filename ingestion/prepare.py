"""Validated events → ``user_daily``: one row per user per UTC day, signup to data end.

Every user has a row for every day from the signup day to the last complete
day, active or not, so rolling windows are plain row frames and a user who
went silent still gets rows (with zeros) that say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pyarrow.parquet as pq

from core import partitions
from core.budget import MEASURED_CAP_BYTES, passes
from core.engines import open_engine
from core.settings import Settings
from core.sql_engine import Engine
from core.tables import EVENTS, SQL_TYPES, USERS, register_validated, validated_event_files
from core.timeline import day_of
from feature_repo.spec import COURSES_COLUMN, COURSES_SQL, DAILY_COLUMNS
from ingestion import raw_store


@dataclass(frozen=True)
class DailyResult:
    first_day: date
    last_day: date
    rows: int
    path: Path


def user_daily_sql(first_day: date, last_day: date) -> str:
    """SQL for the ``user_daily`` rows of days [first_day, last_day], rendered from the spec.

    Reads ``USERS`` and ``EVENTS``; DuckDB dialect (Spark runs its translation).
    """
    aggregates = ",\n        ".join(
        f"CAST({c.sql} AS {SQL_TYPES[c.dtype]}) AS {c.name}" for c in DAILY_COLUMNS
    )
    filled = ",\n    ".join(
        f"coalesce(d.{c.name}, CAST(0 AS {SQL_TYPES[c.dtype]})) AS {c.name}" for c in DAILY_COLUMNS
    )
    return f"""
WITH users AS (
    SELECT user_id, CAST(signup_time AS DATE) AS signup_date
    FROM {USERS}
    WHERE CAST(signup_time AS DATE) <= DATE '{last_day}'
),
spine AS (
    -- The series is unnested in a subquery: Spark accepts a generator only at the top
    -- of a select list, not inside the CAST back to DATE.
    SELECT user_id, CAST(day AS DATE) AS date
    FROM (
        SELECT user_id, unnest(generate_series(
            greatest(signup_date, DATE '{first_day}'), DATE '{last_day}', INTERVAL 1 DAY
        )) AS day
        FROM users
    ) AS days
),
daily AS (
    SELECT
        user_id,
        CAST(event_time AS DATE) AS date,
        {aggregates},
        {COURSES_SQL} AS {COURSES_COLUMN}
    FROM {EVENTS}
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


def default_last_day(engine: Engine, now: datetime) -> date:
    """The last complete UTC day: yesterday, or the newest event's day if that is earlier."""
    newest = engine.rows(f"SELECT CAST(max(event_time) AS DATE) FROM {EVENTS}")[0][0]
    if newest is None:
        raise ValueError(f"{EVENTS} has no events")
    return min(newest, day_of(now.astimezone(UTC)))


def first_day(engine: Engine) -> date:
    """History starts at the first event: users who signed up earlier get rows from then on."""
    signup, event = engine.rows(
        f"SELECT (SELECT CAST(min(signup_time) AS DATE) FROM {USERS}), "
        f"(SELECT CAST(min(event_time) AS DATE) FROM {EVENTS})"
    )[0]
    return max(signup, event)


# The events one pass of the full build groups per 3 GB of DuckDB's cap: 10 M (100k users
# × 120 days) took 14 s in one pass; 100 M at 1 M users took 424 s, 30× as long
# (docs/performance.md, "A million users on one box").
PART_EVENTS = 20_000_000


def day_parts(
    first: date, last: date, events: int, cap_bytes: int = MEASURED_CAP_BYTES
) -> list[tuple[date, date]]:
    """[first, last] cut into consecutive ranges of days of about ``PART_EVENTS`` events
    each per 3 GB of DuckDB's cap (``cap_bytes``), as if the events were spread evenly: one
    range when one pass holds them."""
    days = (last - first).days + 1
    count = min(days, passes(events, PART_EVENTS, cap_bytes))
    bounds = [first + timedelta(days=days * i // count) for i in range(count + 1)]
    return [(lo, hi - timedelta(days=1)) for lo, hi in pairwise(bounds)]


def build_user_daily(
    settings: Settings,
    as_of: date | None = None,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DailyResult:
    """Build ``user_daily``: the whole history, or only day ``as_of`` when given.

    With ``as_of`` the run reads that day's events only and replaces that day's
    partition, so its cost grows with the new data, not with all data. The whole history
    is built in ranges of days (``day_parts``), a pass each, which ``progress`` counts: a
    day's rows need that day's events only, so memory holds one range's groups.
    """
    engine = open_engine(settings)
    register_validated(engine, settings)
    root = settings.user_daily_path
    if as_of is None:
        last = default_last_day(engine, now or datetime.now(UTC))
        first = first_day(engine)
        events = sum(pq.ParquetFile(f).metadata.num_rows for f in validated_event_files(settings))
        parts = day_parts(first, last, events, settings.duckdb_memory_bytes)
        engine.write_parts([user_daily_sql(lo, hi) for lo, hi in parts], root, progress)
    else:
        first = last = as_of
        engine.write_day(user_daily_sql(as_of, as_of), root, as_of)
    return DailyResult(first, last, partitions.count_rows(root, first, last), root)


def build_days_through(
    settings: Settings,
    day: date,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DailyResult:
    """Day ``day``, and every earlier day that received events since its row was built
    (late events: ``ingestion.raw_store.pending_days``), one partition each."""
    days = sorted({d for d in raw_store.pending_days(settings) if d <= day} | {day})
    for i, one in enumerate(days):
        build_user_daily(settings, as_of=one, now=now)
        if progress:
            progress(i + 1, len(days))
    root = settings.user_daily_path
    rows = sum(partitions.count_rows(root, d, d) for d in days)
    return DailyResult(days[0], day, rows, root)
