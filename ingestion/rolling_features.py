"""``user_daily`` → rolling-window features per user per day (the Feast offline store).

The row for calendar day D carries ``event_timestamp`` = D+1 00:00 UTC, the
moment day D is complete, and is computed from ``user_daily`` rows of days ≤ D
only, so a point-in-time join at T never sees an event at or after T.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from core import partitions
from core.budget import MEASURED_CAP_BYTES, passes
from core.engines import open_engine
from core.settings import Settings
from core.sql_engine import Engine
from core.tables import (
    SQL_TYPES,
    USER_DAILY,
    USERS,
    MissingInputError,
    register_table,
    register_validated,
)
from core.timeline import stamp_sql
from feature_repo.spec import (
    COURSE_STEP,
    COURSES_COLUMN,
    DAYS_SINCE_FIRST_ACTIVITY,
    DISTINCT_COURSES_LIFETIME,
    EXACT_SQL_TYPE,
    LAST_EVENT_FEATURES,
    LIFETIME_FEATURES,
    MEAN_GAP,
    NEW_COURSES,
    STATE_FEATURES,
    TIMESTAMP_FIELD,
    TREND_BASES,
    WINDOW_FEATURES,
    feature_names,
    last_event_feature_name,
    lifetime_feature_name,
    rate_feature_name,
    trend_feature_name,
    window_feature_name,
)
from ingestion import raw_store

PREVIOUS = "previous_features"
USER_COURSES = "user_courses"  # (user_id, course, date): the first day a user touched a course
SEEN_COURSES = "seen_courses"  # the user_courses rows of the days before a daily run's day

_PROFILE = [f.name for f in STATE_FEATURES if f.dtype == "string"]


@dataclass(frozen=True)
class FeatureResult:
    first_day: date
    last_day: date
    rows: int
    path: Path


def user_courses_sql(first_day: date, last_day: date, seen: bool) -> str:
    """The (user, course) pairs first touched in days [first_day, last_day] of ``USER_DAILY``.

    With ``seen``, pairs already in ``SEEN_COURSES`` (touched on an earlier day) are left out,
    so a daily run reads the pairs seen so far, not the history of daily rows.
    """
    unseen = (
        f"LEFT JOIN {SEEN_COURSES} s ON s.user_id = t.user_id AND s.course = t.course "
        "WHERE s.user_id IS NULL"
        if seen
        else ""
    )
    return f"""
SELECT t.user_id, t.course, min(t.date) AS date
FROM (
    SELECT user_id, date, unnest({COURSES_COLUMN}) AS course
    FROM {USER_DAILY}
    WHERE date BETWEEN DATE '{first_day}' AND DATE '{last_day}'
) AS t
{unseen}
GROUP BY t.user_id, t.course
"""


def _previous_columns(previous: bool) -> str:
    """The previous day's row as the carried state: anchors (dates) and lifetime totals."""
    anchors = {
        "last_active": "days_since_last_activity",
        "first_active": DAYS_SINCE_FIRST_ACTIVITY,
        **{f"last_{f.name}": last_event_feature_name(f.name) for f in LAST_EVENT_FEATURES},
    }
    totals = {lifetime_feature_name(f.name): f.dtype for f in LIFETIME_FEATURES}
    totals[DISTINCT_COURSES_LIFETIME] = "int64"
    if not previous:
        columns = ["NULL::VARCHAR AS user_id"]
        columns += [f"NULL::DATE AS {name}" for name in anchors]
        columns += [f"NULL::{SQL_TYPES[dtype]} AS {name}" for name, dtype in totals.items()]
        return "SELECT " + ", ".join(columns) + " WHERE false"
    columns = ["user_id"]
    columns += [
        f"CAST(date - {days} * INTERVAL 1 DAY AS DATE) AS {name}" for name, days in anchors.items()
    ]
    columns += list(totals)
    return "SELECT " + ", ".join(columns) + f" FROM {PREVIOUS}"


def rolling_features_sql(
    windows: tuple[int, ...],
    first_day: date,
    last_day: date,
    history_start: date,
    previous: bool = False,
    courses: bool = True,
    users: str = "true",
) -> str:
    """SQL for the feature rows of days [first_day, last_day], rendered from the spec.

    Reads ``USERS`` and ``USER_DAILY``, which must hold, for every user, contiguous
    rows from ``max(window) - 1`` days before ``first_day`` (or from signup) to
    ``last_day``, and ``USER_COURSES`` (unless not ``courses``: nobody touched a course)
    for days [first_day, last_day]; ``history_start`` is the first day of ``user_daily``.
    With ``previous``, ``PREVIOUS`` (the feature rows of the day before ``first_day``)
    carries the lifetime totals and the last and first days of each kind forward, so the
    history itself is not re-read; without it they start at ``history_start``.
    ``users``: a predicate on ``user_id``, the users whose rows are built (``user_buckets``).
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
    window_names = [window_feature_name(f.name, w) for w in windows for f in WINDOW_FEATURES]
    steps, step_sums, step_fill = _course_steps(windows)
    # Days observed so far: since signup, or since the history starts for older users.
    observed = f"(date_diff('day', greatest(u.signup_date, DATE '{history_start}'), r.date) + 1)"
    profile = ", ".join(f"u.{c}" for c in _PROFILE)
    return f"""
WITH daily AS (
    SELECT * FROM {USER_DAILY} WHERE {users}
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
first_touches AS ({_first_touches_sql(first_day, last_day, courses, users)}),
stepped AS (
    SELECT d.*, {step_fill}, coalesce(f.{NEW_COURSES}, 0) AS {NEW_COURSES}
    FROM daily d
    LEFT JOIN course_steps s USING (user_id, date)
    LEFT JOIN first_touches f USING (user_id, date)
),
rolled AS (
    SELECT
        user_id,
        date,
        {window_columns},
        {_running_columns(first_day, last_day)}
    FROM stepped
    WINDOW
    running AS (PARTITION BY user_id ORDER BY date ROWS UNBOUNDED PRECEDING){window_clauses}
),
previous AS ({_previous_columns(previous)}),
featured AS (
    SELECT
    r.user_id,
    {stamp_sql("r.date")} AS {TIMESTAMP_FIELD},
    {", ".join(f"r.{n}" for n in window_names)}{_trend_columns(windows, observed)},
    {_lifetime_columns()},
    CAST(coalesce(p.{DISTINCT_COURSES_LIFETIME}, 0) + r.courses_fresh AS BIGINT)
        AS {DISTINCT_COURSES_LIFETIME},
    {_last_event_columns()},
    CAST(date_diff('day', coalesce(p.first_active, r.first_active_date), r.date) AS BIGINT)
        AS {DAYS_SINCE_FIRST_ACTIVITY},
    CAST(date_diff('day', coalesce(r.last_active_date, p.last_active, u.signup_date), r.date)
        AS BIGINT) AS days_since_last_activity,
    CAST(date_diff('day', u.signup_date, r.date) AS BIGINT) AS tenure_days,
    {profile},
    {observed} AS observed_days,
    r.date
    FROM rolled r
    JOIN (
        SELECT user_id, CAST(signup_time AS DATE) AS signup_date, {", ".join(_PROFILE)}
        FROM {USERS} WHERE {users}
    ) u USING (user_id)
    LEFT JOIN previous p USING (user_id)
    WHERE r.date BETWEEN DATE '{first_day}' AND DATE '{last_day}'
)
SELECT
    user_id,
    {TIMESTAMP_FIELD},
    {_output_columns(windows)},
    date
FROM featured
"""


def _running_columns(first_day: date, last_day: date) -> str:
    """Per user, over the rows read: what the previous day's row does not hold yet (the
    totals of the days from ``first_day`` on) and the last and first days of each kind.

    A one-day run outputs day ``first_day``'s rows only, and everything before that day is
    in the previous row (or there is nothing before it), so its own row is enough: no
    running window over the look-back.
    """
    fresh = f"date >= DATE '{first_day}'"  # rows not yet in the previous day's totals
    one_day = first_day == last_day

    def running(aggregate: str, expression: str) -> str:
        return expression if one_day else f"{aggregate}({expression}) OVER running"

    return ",\n        ".join(
        [
            running(
                "sum", f"CASE WHEN {fresh} THEN CAST({f.daily} AS {_exact(f.dtype)}) ELSE 0 END"
            )
            + f" AS {f.name}_fresh"
            for f in LIFETIME_FEATURES
        ]
        + [running("sum", f"CASE WHEN {fresh} THEN {NEW_COURSES} ELSE 0 END") + " AS courses_fresh"]
        + [
            running("max", f"CASE WHEN {f.daily} > 0 THEN date END") + f" AS last_{f.name}_date"
            for f in LAST_EVENT_FEATURES
        ]
        + [
            running("max", "CASE WHEN active = 1 THEN date END") + " AS last_active_date",
            running("min", "CASE WHEN active = 1 THEN date END") + " AS first_active_date",
        ]
    )


def _course_steps(windows: tuple[int, ...]) -> tuple[str, str, str]:
    """The +1/-1 steps of each course touch per window, their sums, and their fill."""
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
    return steps, step_sums, step_fill


def _first_touches_sql(first_day: date, last_day: date, courses: bool, users: str) -> str:
    """New courses per (user, day) from ``USER_COURSES``, or no rows when none was touched."""
    if courses:
        return (
            f"SELECT user_id, date, count(*) AS {NEW_COURSES} FROM {USER_COURSES} "
            f"WHERE date BETWEEN DATE '{first_day}' AND DATE '{last_day}' AND {users} "
            "GROUP BY user_id, date"
        )
    return (
        f"SELECT NULL::VARCHAR AS user_id, NULL::DATE AS date, NULL::BIGINT AS {NEW_COURSES} "
        "WHERE false"
    )


def _trend_columns(windows: tuple[int, ...], observed: str) -> str:
    """Short- over long-window rates, per observed day: a user with 3 days of history is
    not read as slowing down. None with a single window."""
    if len(windows) < 2:
        return ""
    short, long = min(windows), max(windows)
    return "".join(
        f",\n    (r.{window_feature_name(b, short)} / least({short}, {observed}))"
        f" / nullif(r.{window_feature_name(b, long)} / least({long}, {observed}), 0) "
        f"AS {trend_feature_name(b, short, long)}"
        for b in TREND_BASES
    )


def _lifetime_columns() -> str:
    """Lifetime totals: the previous day's total plus what the rows read add."""
    return ",\n    ".join(
        f"CAST(coalesce(CAST(p.{lifetime_feature_name(f.name)} AS {_exact(f.dtype)}), 0) "
        f"+ r.{f.name}_fresh AS {SQL_TYPES[f.dtype]}) AS {lifetime_feature_name(f.name)}"
        for f in LIFETIME_FEATURES
    )


def _last_event_columns() -> str:
    """Days since the last day of each kind, carried from the previous row when not in these."""
    return ",\n    ".join(
        f"CAST(date_diff('day', coalesce(r.last_{f.name}_date, p.last_{f.name}), r.date) "
        f"AS BIGINT) AS {last_event_feature_name(f.name)}"
        for f in LAST_EVENT_FEATURES
    )


def _output_columns(windows: tuple[int, ...]) -> str:
    """The spec's feature columns in order; rates per observed day and the mean gap computed."""
    computed = {
        rate_feature_name(f.name): (
            f"CAST({lifetime_feature_name(f.name)} AS DOUBLE) / observed_days"
        )
        for f in LIFETIME_FEATURES
        if f.rate
    }
    computed[MEAN_GAP] = (
        f"CASE WHEN {lifetime_feature_name('active_days')} >= 2 THEN "
        f"CAST({DAYS_SINCE_FIRST_ACTIVITY} - days_since_last_activity AS DOUBLE) "
        f"/ ({lifetime_feature_name('active_days')} - 1) END"
    )
    return ",\n    ".join(
        f"{computed[name]} AS {name}" if name in computed else name
        for name in feature_names(windows)
    )


def _exact(dtype: str) -> str:
    """The type a lifetime total is summed in (``EXACT_SQL_TYPE`` for floats)."""
    return EXACT_SQL_TYPE if dtype == "float64" else SQL_TYPES[dtype]


def build_rolling_features(
    settings: Settings,
    as_of: date | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureResult:
    """Build the feature table: the whole history, or only day ``as_of`` (appended).

    A daily run reads ``max(window)`` days of ``user_daily``, the previous day's
    feature rows (which carry the lifetime totals) and the (user, course) pairs seen
    so far, so its cost does not grow with the length of history. The whole history is
    built in buckets of users (``user_buckets``), each a pass of its own, so memory holds
    one bucket's windows whatever the portal's size; ``progress`` counts the buckets.
    """
    days = partitions.partition_days(settings.user_daily_path)
    if not days:
        raise MissingInputError(
            f"{settings.user_daily_path} is empty: run `churn data prepare` first"
        )
    root, courses_root = settings.features_path, settings.user_courses_path
    engine = open_engine(settings)
    register_validated(engine, settings)
    if as_of is None:
        first_day, last_day = days[0], days[-1]
        register_table(engine, USER_DAILY, settings.user_daily_path, days)
        engine.write_table(user_courses_sql(first_day, last_day, seen=False), courses_root)
        courses = _register_courses(engine, courses_root, partitions.partition_days(courses_root))
        rows = partitions.count_rows(settings.user_daily_path, first_day, last_day)
        sqls = [
            rolling_features_sql(
                settings.windows, first_day, last_day, days[0], False, courses, users=bucket
            )
            for bucket in user_buckets(engine, rows, settings.duckdb_memory_bytes)
        ]
        engine.write_parts(sqls, root, progress)
    else:
        if as_of not in days:
            raise MissingInputError(
                f"user_daily has no day {as_of}: run `churn data prepare --day {as_of}` first"
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
            _check_carries_lifetime(root, previous_day, courses_root)
            register_table(engine, PREVIOUS, root, [previous_day])
        register_table(engine, USER_DAILY, settings.user_daily_path, lookback)
        seen = [d for d in partitions.partition_days(courses_root) if d < as_of]
        if seen:
            register_table(engine, SEEN_COURSES, courses_root, seen)
        engine.write_day(user_courses_sql(as_of, as_of, seen=bool(seen)), courses_root, as_of)
        courses = _register_courses(engine, courses_root, [as_of])
        sql = rolling_features_sql(settings.windows, as_of, as_of, days[0], has_previous, courses)
        engine.write_day(sql, root, as_of)
    if as_of is None:  # every day is rebuilt: late events included
        raw_store.clear_pending(settings, [d for d in raw_store.pending_days(settings)
                                           if d <= last_day])  # fmt: skip
    return FeatureResult(
        first_day, last_day, partitions.count_rows(root, first_day, last_day), root
    )


# The user-days one pass of the full build holds per 3 GB of DuckDB's cap: 8.0 M (100k
# users × 120 days) were built in one pass at a 3.3 GB peak under the default 3GB; at 1 M
# users one pass over 80 M spilled and took 35× as long as 100k's for 10× the rows
# (docs/performance.md, "A million users on one box").
BUCKET_ROWS = 8_000_000


def user_buckets(engine: Engine, rows: int, cap_bytes: int = MEASURED_CAP_BYTES) -> list[str]:
    """Predicates on ``user_id`` that split the users into buckets of about ``BUCKET_ROWS``
    (per 3 GB of DuckDB's cap, ``cap_bytes``) of the ``rows`` user-days: every user in
    exactly one. ``["true"]`` when one pass holds them, and on Spark, which spreads one pass
    over its executors itself."""
    count = passes(rows, BUCKET_ROWS, cap_bytes)
    if count <= 1 or engine.name != "duckdb":
        return ["true"]
    # DuckDB's hash is an unsigned 64-bit integer: the remainder is never negative.
    return [f"hash(user_id) % {count} = {i}" for i in range(count)]


# Late events that reach further back than this many days rebuild the whole table instead
# of day by day: at 100k users a daily run took 10 s and the full build 86 s
# (docs/performance.md, "Ingest from the portal's PostgreSQL").
REBUILD_ALL_AFTER_DAYS = 8


def build_features_through(
    settings: Settings, day: date, progress: Callable[[int, int], None] | None = None
) -> FeatureResult:
    """Day ``day``'s features, after those of every day since the oldest one that received
    late events (their windows and lifetime totals carry into the days after them).

    The days are forgotten as pending only once all are built: a failure part-way leaves
    them for the next run.
    """
    pending = [d for d in raw_store.pending_days(settings) if d <= day]
    first = min([*pending, day])
    days = [first + timedelta(days=i) for i in range((day - first).days + 1)]
    if len(days) > REBUILD_ALL_AFTER_DAYS:  # one pass over history beats many daily runs
        return build_rolling_features(settings, progress=progress)
    for i, one in enumerate(days):
        build_rolling_features(settings, as_of=one)
        if progress:
            progress(i + 1, len(days))
    raw_store.clear_pending(settings, pending)
    root = settings.features_path
    return FeatureResult(first, day, partitions.count_rows(root, first, day), root)


def _register_courses(engine: Engine, root: Path, days: list[date]) -> bool:
    """``USER_COURSES`` of ``days``; False (nothing registered) when no course was touched."""
    if not partitions.partition_files(root, days):
        return False
    register_table(engine, USER_COURSES, root, days)
    return True


def _check_carries_lifetime(root: Path, previous_day: date, courses_root: Path) -> None:
    """The previous day's rows must carry the lifetime totals the daily run adds to."""
    files = partitions.partition_files(root, [previous_day])
    if not courses_root.is_dir() or (
        files and DISTINCT_COURSES_LIFETIME not in pq.read_schema(files[0]).names
    ):
        raise MissingInputError(
            f"the features of {previous_day} in {root} were built without the lifetime "
            "totals a daily run adds to: rebuild the history once with `churn features build`"
        )
