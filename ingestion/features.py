"""``user_daily`` → rolling-window features per user per day (the Feast offline store).

The row for calendar day D carries ``event_timestamp`` = D+1 00:00 UTC, the
moment day D is complete, and is computed from ``user_daily`` rows of days ≤ D
only, so a point-in-time join at T never sees an event at or after T.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from churn.settings import Settings
from feature_repo.spec import (
    COURSE_STEP,
    COURSES_COLUMN,
    STATE_FEATURES,
    TIMESTAMP_FIELD,
    TREND_BASES,
    WINDOW_FEATURES,
    trend_feature_name,
    window_feature_name,
)
from ingestion import partitions
from ingestion.prepare import (
    SQL_TYPES,
    USER_DAILY,
    USERS,
    MissingInputError,
    register_table,
    register_validated,
)
from ingestion.sql_engine import open_engine

PREVIOUS = "previous_features"

_PROFILE = [f.name for f in STATE_FEATURES if f.dtype == "string"]


@dataclass(frozen=True)
class FeatureResult:
    first_day: date
    last_day: date
    rows: int
    path: Path


def rolling_features_sql(
    windows: tuple[int, ...],
    first_day: date,
    last_day: date,
    history_start: date,
    previous: bool = False,
) -> str:
    """SQL for the feature rows of days [first_day, last_day], rendered from the spec.

    Reads ``USERS`` and ``USER_DAILY``, which must hold, for every user, contiguous
    rows from ``max(window) - 1`` days before ``first_day`` (or from signup) to
    ``last_day``; ``history_start`` is the first day of ``user_daily`` as a whole.
    With ``previous``, ``PREVIOUS`` (the feature rows of the day before ``first_day``)
    carries the last active day forward when the history itself is not re-read.
    DuckDB dialect (Spark runs its translation).
    """
    window_clauses = "".join(
        f",\n    w{w} AS (PARTITION BY user_id ORDER BY date "
        f"ROWS BETWEEN {w - 1} PRECEDING AND CURRENT ROW)"
        for w in windows
    )
    window_columns = ",\n        ".join(
        f"CAST({f.sql.format(w=f'w{w}', n=w)} AS {SQL_TYPES[f.dtype]}) "
        f"AS {window_feature_name(f.name, w)}"
        for w in windows
        for f in WINDOW_FEATURES
    )
    steps = "\n        UNION ALL\n        ".join(
        [
            "SELECT user_id, date, "
            + ", ".join(f"1 AS {COURSE_STEP}_{w}" for w in windows)
            + " FROM course_spans"
        ]
        + [
            f"SELECT user_id, least(next_date, date + {w}), "
            + ", ".join(f"{-1 if v == w else 0}" for v in windows)
            + " FROM course_spans"
            for w in windows
        ]
    )
    step_sums = ", ".join(f"sum({COURSE_STEP}_{w}) AS {COURSE_STEP}_{w}" for w in windows)
    step_fill = ", ".join(f"coalesce(s.{COURSE_STEP}_{w}, 0) AS {COURSE_STEP}_{w}" for w in windows)
    trends = ""
    if len(windows) > 1:
        short, long = min(windows), max(windows)
        # Rates per observed day, so a user with 3 days of history is not read as slowing down.
        observed = (
            "least({w}, date_diff('day', greatest(u.signup_date, DATE '{start}'), r.date) + 1)"
        )
        trends = "".join(
            f",\n    (r.{window_feature_name(b, short)} / {observed.format(w=short, start=history_start)})"
            f" / nullif(r.{window_feature_name(b, long)} / "
            f"{observed.format(w=long, start=history_start)}, 0) "
            f"AS {trend_feature_name(b, short, long)}"
            for b in TREND_BASES
        )
    if not previous:
        previous_anchor = "SELECT NULL::VARCHAR AS user_id, NULL::DATE AS anchor WHERE false"
    else:
        previous_anchor = (
            "SELECT user_id, CAST(date - days_since_last_activity * INTERVAL 1 DAY AS DATE) "
            f"AS anchor FROM {PREVIOUS}"
        )
    profile = ", ".join(f"u.{c}" for c in _PROFILE)
    return f"""
WITH daily AS (
    SELECT * FROM {USER_DAILY}
),
-- Distinct courses per window, exactly and without lists: a course touched on
-- day d counts from d until it is touched again or leaves the window, so each
-- touch is a +1 step on d and a -1 step on least(next touch, d + window); the
-- running sum of the steps is the distinct count.
course_spans AS (
    SELECT user_id, date, lead(date) OVER (PARTITION BY user_id, course ORDER BY date) AS next_date
    FROM (SELECT user_id, date, unnest({COURSES_COLUMN}) AS course FROM daily) AS touched
),
course_steps AS (
    SELECT user_id, date, {step_sums}
    FROM (
        {steps}
    )
    GROUP BY user_id, date
),
stepped AS (
    SELECT d.*, {step_fill}
    FROM daily d LEFT JOIN course_steps s USING (user_id, date)
),
rolled AS (
    SELECT
        user_id,
        date,
        {window_columns},
        max(CASE WHEN active = 1 THEN date END) OVER running AS last_active_date
    FROM stepped
    WINDOW
    running AS (PARTITION BY user_id ORDER BY date ROWS UNBOUNDED PRECEDING){window_clauses}
),
previous_anchor AS ({previous_anchor})
SELECT
    r.user_id,
    CAST(r.date + INTERVAL 1 DAY AS TIMESTAMPTZ) AS {TIMESTAMP_FIELD},
    r.* EXCLUDE (user_id, date, last_active_date){trends},
    CAST(date_diff('day', coalesce(r.last_active_date, p.anchor, u.signup_date), r.date) AS BIGINT)
        AS days_since_last_activity,
    CAST(date_diff('day', u.signup_date, r.date) AS BIGINT) AS tenure_days,
    {profile},
    r.date
FROM rolled r
JOIN (
    SELECT user_id, CAST(signup_time AS DATE) AS signup_date, {", ".join(_PROFILE)}
    FROM {USERS}
) u USING (user_id)
LEFT JOIN previous_anchor p USING (user_id)
WHERE r.date BETWEEN DATE '{first_day}' AND DATE '{last_day}'
"""


def build_rolling_features(settings: Settings, as_of: date | None = None) -> FeatureResult:
    """Build the feature table: the whole history, or only day ``as_of`` (appended).

    A daily run reads ``max(window)`` days of ``user_daily`` and the previous
    day's feature rows, so its cost does not grow with the length of history.
    """
    days = partitions.partition_days(settings.user_daily_path)
    if not days:
        raise MissingInputError(
            f"{settings.user_daily_path} is empty: run `churn data prepare` first"
        )
    root = settings.features_path
    engine = open_engine(settings)
    register_validated(engine, settings)
    if as_of is None:
        first_day, last_day = days[0], days[-1]
        register_table(engine, USER_DAILY, settings.user_daily_path, days)
        engine.write_table(
            rolling_features_sql(settings.windows, first_day, last_day, days[0]), root
        )
    else:
        if as_of not in days:
            raise MissingInputError(
                f"user_daily has no day {as_of}: run `churn data prepare --as-of {as_of}` first"
            )
        first_day = last_day = as_of
        start = max(days[0], as_of - timedelta(days=max(settings.windows) - 1))
        lookback = [start + timedelta(days=i) for i in range((as_of - start).days + 1)]
        if not set(lookback) <= set(days):
            missing = sorted(set(lookback) - set(days))
            raise MissingInputError(
                f"user_daily lacks days {missing[0]}…{missing[-1]} needed by the windows: "
                f"run `churn data prepare` for them first"
            )
        previous_day = as_of - timedelta(days=1)
        has_previous = previous_day in partitions.partition_days(root)
        if not has_previous and previous_day >= days[0]:
            raise MissingInputError(
                f"features for {previous_day} are missing: build history first "
                f"(`churn features build`) or run the missing days in order"
            )
        if has_previous:
            register_table(engine, PREVIOUS, root, [previous_day])
        register_table(engine, USER_DAILY, settings.user_daily_path, lookback)
        sql = rolling_features_sql(settings.windows, as_of, as_of, days[0], has_previous)
        engine.write_day(sql, root, as_of)
    return FeatureResult(
        first_day, last_day, partitions.count_rows(root, first_day, last_day), root
    )
