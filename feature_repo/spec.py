"""The feature specification, written once.

``ingestion.prepare`` renders the daily-table SQL from ``DAILY_COLUMNS``,
``ingestion.rolling_features`` renders the feature SQL from ``WINDOW_FEATURES``,
``LIFETIME_FEATURES``, ``LAST_EVENT_FEATURES`` and ``STATE_FEATURES``, and
``feature_repo.features`` builds the Feast ``Field`` schemas from ``feature_columns``.
Changing the window list (``CHURN_WINDOWS``) or adding a feature here changes the
SQL, the Feast schema, the online store and the API together, with no other edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.contract import ACTIVE_EVENT_TYPES

Dtype = Literal["int64", "float64", "string"]

ENTITY_KEY = "user_id"
TIMESTAMP_FIELD = "event_timestamp"
FEATURE_VIEW = "user_activity"


@dataclass(frozen=True)
class DailyColumn:
    """One column of ``user_daily``: an aggregate over one user's events of one UTC day."""

    name: str
    sql: str  # aggregate over the rows of ``events`` for the (user, day) group
    dtype: Dtype
    description: str


@dataclass(frozen=True)
class WindowFeature:
    """A rolling feature, rendered once per window as ``{name}_{n}d``.

    ``sql`` is a window expression over ``user_daily`` rows: ``{w}`` stands for
    the named window of ``{n}`` days, ``running`` for all rows up to the day.
    """

    name: str
    sql: str
    dtype: Dtype
    description: str


@dataclass(frozen=True)
class LifetimeFeature:
    """A total since the user's first day in the data, rendered as ``{name}_lifetime``.

    Day D's total is day D−1's plus day D's ``daily`` column, so the nightly run reads
    one new day, not the history. With ``rate``, also ``{name}_per_day_lifetime``: the
    total per observed day of tenure (frequency, in RFM terms).
    """

    name: str
    daily: str  # the ``user_daily`` column summed
    dtype: Dtype
    description: str
    rate: bool = False


@dataclass(frozen=True)
class LastEventFeature:
    """Days since the user's last day with ``daily`` > 0, as ``days_since_last_{name}``.

    Null when there was none yet: "never paid" is not "paid long ago".
    """

    name: str
    daily: str


@dataclass(frozen=True)
class StateFeature:
    """A feature that does not depend on a window (recency, tenure, profile)."""

    name: str
    dtype: Dtype
    description: str


_ACTIVE = ", ".join(f"'{t}'" for t in ACTIVE_EVENT_TYPES)

DAILY_COLUMNS: tuple[DailyColumn, ...] = (
    DailyColumn(
        "active",
        f"max(CASE WHEN event_type IN ({_ACTIVE}) THEN 1 ELSE 0 END)",
        "int64",
        "1 if the user did any learning activity that day",
    ),
    DailyColumn("logins", "count(*) FILTER (WHERE event_type = 'login')", "int64", "logins"),
    DailyColumn(
        "videos", "count(*) FILTER (WHERE event_type = 'video_watch')", "int64", "videos watched"
    ),
    DailyColumn(
        "watch_minutes",
        "coalesce(sum(watch_minutes) FILTER (WHERE event_type = 'video_watch'), 0)",
        "float64",
        "minutes of video watched",
    ),
    DailyColumn(
        "quiz_attempts",
        "count(*) FILTER (WHERE event_type = 'quiz_attempt')",
        "int64",
        "quiz attempts",
    ),
    DailyColumn(
        "quiz_score_sum",
        "coalesce(sum(quiz_score) FILTER (WHERE event_type = 'quiz_attempt'), 0)",
        "float64",
        "sum of quiz scores (mean = sum / attempts)",
    ),
    DailyColumn(
        "enrolments",
        "count(*) FILTER (WHERE event_type = 'course_enroll')",
        "int64",
        "course enrolments",
    ),
    DailyColumn(
        "payments_ok",
        "count(*) FILTER (WHERE event_type = 'payment_success')",
        "int64",
        "successful payments",
    ),
    DailyColumn(
        "payments_failed",
        "count(*) FILTER (WHERE event_type = 'payment_failed')",
        "int64",
        "failed payments",
    ),
    DailyColumn(
        "amount_paid",
        "coalesce(sum(amount) FILTER (WHERE event_type = 'payment_success'), 0)",
        "float64",
        "amount successfully paid",
    ),
    DailyColumn(
        "tickets",
        "count(*) FILTER (WHERE event_type = 'support_ticket')",
        "int64",
        "support tickets opened",
    ),
    DailyColumn(
        "distinct_courses", "count(DISTINCT course_id)", "int64", "distinct courses touched"
    ),
)

# The list of course ids of the day: kept in user_daily so a window can count
# distinct courses exactly (a sum of daily distinct counts would double count).
# ``ingestion.rolling_features`` turns the lists into +1/-1 steps per window (COURSE_STEP).
COURSES_COLUMN = "courses"
COURSE_STEP = "course_step"
COURSES_SQL = "list_distinct(list(course_id) FILTER (WHERE course_id IS NOT NULL))"


# Sums of float columns are taken as decimals: exact and independent of the order of
# additions, so a day's value is the same whether the full build rolls over the whole
# history or the daily run adds one day to yesterday's (to the millionth).
EXACT_SQL_TYPE = "DECIMAL(38, 6)"


def _sum(column: str) -> str:
    return f"sum({column}) OVER {{w}}"


def _exact_sum(column: str) -> str:
    # Back to DOUBLE before any division: Spark would keep a decimal's scale, DuckDB not.
    return f"CAST(sum(CAST({column} AS {EXACT_SQL_TYPE})) OVER {{w}} AS DOUBLE)"


WINDOW_FEATURES: tuple[WindowFeature, ...] = (
    WindowFeature("active_days", _sum("active"), "int64", "days with learning activity"),
    WindowFeature("logins", _sum("logins"), "int64", "logins"),
    WindowFeature("videos", _sum("videos"), "int64", "videos watched"),
    WindowFeature(
        "watch_minutes", _exact_sum("watch_minutes"), "float64", "minutes of video watched"
    ),
    WindowFeature("quiz_attempts", _sum("quiz_attempts"), "int64", "quiz attempts"),
    WindowFeature(
        "quiz_score_mean",
        _exact_sum("quiz_score_sum") + " / nullif(sum(quiz_attempts) OVER {w}, 0)",
        "float64",
        "mean quiz score (null without attempts)",
    ),
    WindowFeature("enrolments", _sum("enrolments"), "int64", "course enrolments"),
    WindowFeature("payments_ok", _sum("payments_ok"), "int64", "successful payments"),
    WindowFeature("payments_failed", _sum("payments_failed"), "int64", "failed payments"),
    WindowFeature("amount_paid", _exact_sum("amount_paid"), "float64", "amount successfully paid"),
    WindowFeature("tickets", _sum("tickets"), "int64", "support tickets"),
    WindowFeature(
        "distinct_courses",
        f"sum({COURSE_STEP}_{{n}}) OVER running",
        "int64",
        "distinct courses touched",
    ),
)

# Trend ratios compare the shortest window's daily rate with the longest one's:
# below 1 means the user is slowing down. Null when the long window is empty.
TREND_BASES: tuple[str, ...] = ("active_days", "logins", "watch_minutes")

# Lifetime engagement: the frequency and monetary value that windows of at most
# max(CHURN_WINDOWS) days cannot see (a loyal customer's quiet month is not a new one's).
LIFETIME_FEATURES: tuple[LifetimeFeature, ...] = (
    LifetimeFeature("active_days", "active", "int64", "days with learning activity", rate=True),
    LifetimeFeature("logins", "logins", "int64", "logins", rate=True),
    LifetimeFeature("videos", "videos", "int64", "videos watched"),
    LifetimeFeature(
        "watch_minutes", "watch_minutes", "float64", "minutes of video watched", rate=True
    ),
    LifetimeFeature("quiz_attempts", "quiz_attempts", "int64", "quiz attempts"),
    LifetimeFeature("enrolments", "enrolments", "int64", "course enrolments", rate=True),
    LifetimeFeature("payments_ok", "payments_ok", "int64", "successful payments", rate=True),
    LifetimeFeature("payments_failed", "payments_failed", "int64", "failed payments"),
    LifetimeFeature("amount_paid", "amount_paid", "float64", "amount successfully paid", rate=True),
    LifetimeFeature("tickets", "tickets", "int64", "support tickets"),
)
# Distinct courses since the first day: counted from the first day each user touched
# each course (the ``user_courses`` table), because a sum of daily distinct counts
# would count a course once per day it was touched.
DISTINCT_COURSES_LIFETIME = "distinct_courses_lifetime"
NEW_COURSES = "new_courses"  # courses first touched that day, per user

LAST_EVENT_FEATURES: tuple[LastEventFeature, ...] = (
    LastEventFeature("payment", "payments_ok"),
    LastEventFeature("video", "videos"),
    LastEventFeature("quiz", "quiz_attempts"),
    LastEventFeature("ticket", "tickets"),
)
DAYS_SINCE_FIRST_ACTIVITY = "days_since_first_activity"
MEAN_GAP = "mean_days_between_active_days"

STATE_FEATURES: tuple[StateFeature, ...] = (
    StateFeature("days_since_last_activity", "int64", "days since the last active day (or signup)"),
    StateFeature("tenure_days", "int64", "days since signup"),
    StateFeature("plan", "string", "free | paid | unknown"),
    StateFeature("country", "string", "country code or unknown"),
    StateFeature("acquisition_channel", "string", "how the user came, or unknown"),
)


def ageing_features() -> tuple[str, ...]:
    """Features the calendar moves whatever users do: tenure, and every feature that looks
    back to the user's first day in the data (totals, rates, the last and first days).

    Their distribution shifts as the history grows (a user enrols most on the first days, so
    even a rate per day of tenure falls with tenure), so drift shows them but does not count
    them (what ``monitor.drift.ignored_features`` takes while ``CHURN_DRIFT_IGNORE_FEATURES``
    is unset).
    """
    return ("tenure_days", *(name for name, _, _ in lifetime_columns()))


def lifetime_feature_name(name: str) -> str:
    return f"{name}_lifetime"


def rate_feature_name(name: str) -> str:
    return f"{name}_per_day_lifetime"


def last_event_feature_name(name: str) -> str:
    return f"days_since_last_{name}"


def window_feature_name(name: str, window: int) -> str:
    return f"{name}_{window}d"


def trend_feature_name(base: str, short: int, long: int) -> str:
    return f"{base}_trend_{short}d_{long}d"


def feature_columns(windows: tuple[int, ...]) -> list[tuple[str, Dtype, str]]:
    """Every feature as (name, dtype, description), in the order of the Parquet and Feast schema."""
    columns: list[tuple[str, Dtype, str]] = []
    for window in windows:
        for feature in WINDOW_FEATURES:
            description = f"{feature.description}, last {window} days"
            columns.append((window_feature_name(feature.name, window), feature.dtype, description))
    if len(windows) > 1:
        short, long = min(windows), max(windows)
        for base in TREND_BASES:
            description = f"daily rate of {base}: last {short} days / last {long} days"
            columns.append((trend_feature_name(base, short, long), "float64", description))
    columns.extend(lifetime_columns())
    columns.extend((f.name, f.dtype, f.description) for f in STATE_FEATURES)
    return columns


def lifetime_columns() -> list[tuple[str, Dtype, str]]:
    """The features that look back to the user's first day, as (name, dtype, description)."""
    since = "since the user's first day in the data"
    columns: list[tuple[str, Dtype, str]] = [
        (lifetime_feature_name(f.name), f.dtype, f"{f.description}, {since}")
        for f in LIFETIME_FEATURES
    ]
    columns.append((DISTINCT_COURSES_LIFETIME, "int64", f"distinct courses touched, {since}"))
    columns.extend(
        (rate_feature_name(f.name), "float64", f"{f.description} per day, {since}")
        for f in LIFETIME_FEATURES
        if f.rate
    )
    columns.extend(
        (
            last_event_feature_name(f.name),
            "int64",
            f"days since the last day with {f.daily} (null if none)",
        )
        for f in LAST_EVENT_FEATURES
    )
    columns.append(
        (DAYS_SINCE_FIRST_ACTIVITY, "int64", "days since the first active day (null if none)")
    )
    columns.append(
        (MEAN_GAP, "float64", "mean days between active days (null before the second one)")
    )
    return columns


def feature_names(windows: tuple[int, ...]) -> list[str]:
    return [name for name, _, _ in feature_columns(windows)]
