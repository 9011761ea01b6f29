"""Churn labels: who is about to leave, asked at as-of times T (each a UTC midnight).

The one owner of the population and the label, both "active days in a day range":
Population at T: users with at least one active day in [T - active_lookback_days, T)
(``lookback_window``); those already gone, or not signed up yet, are not the question.
Label: ``churned`` = 1 when the user has no active day in [T, T + horizon)
(``horizon_window``), including a user without any ``user_daily`` row in it.
Every use renders its SQL from those windows and the two predicates below, so they
cannot disagree: ``labels_sql`` (training, many T), ``population_sql`` (the nightly
list, one T), ``labels_at_sql`` (the realized labels of the users a batch scored),
``in_population`` (the API's question, of one feature row) and ``in_population_sql``
(the same question in SQL, of the rows of the features table).
Features at T use events before T (the row of day T-1, stamped T), so every
event is either in the features or in the label window, never both or neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from core import partitions
from core.engines import open_engine
from core.settings import Settings
from core.sql_engine import Engine
from core.tables import USER_DAILY, MissingInputError, register_table
from core.timeline import day_of, last_complete_as_of, stamp_sql, start_of
from feature_repo.spec import (
    DAYS_SINCE_FIRST_ACTIVITY,
    ENTITY_KEY,
    FEATURE_VIEW,
    TIMESTAMP_FIELD,
)
from training import outreach
from training.references import RECENCY

LABEL = "churned"
SAMPLED = "training_users"  # the relation of the users a training sample holds
CONTACTED = "outreach_contacted"  # the relation of the nights users were on the contact arm
# The online features ``in_population`` reads: serving fetches them whatever the model uses.
POPULATION_FEATURES = (
    f"{FEATURE_VIEW}:{RECENCY}",
    f"{FEATURE_VIEW}:{DAYS_SINCE_FIRST_ACTIVITY}",
)


@dataclass(frozen=True)
class AsOfRange:
    """As-of days D (T = D 00:00 UTC) with a full horizon observed and full feature windows."""

    first: date
    last: date
    stride: int

    def days(self) -> list[date]:
        count = (self.last - self.first).days // self.stride + 1
        return [self.first + timedelta(days=i * self.stride) for i in range(max(count, 0))]


def asof_range(history: list[date], settings: Settings) -> AsOfRange:
    """The as-of days a history of ``user_daily`` days can label.

    The first T leaves ``max(window)`` days of history before it (no truncated
    windows); the last T has its whole horizon inside the data.
    """
    if not history:
        raise MissingInputError("user_daily is empty: run `churn data prepare` first")
    first = history[0] + timedelta(days=max(settings.windows))
    last = last_complete_as_of(history[-1], settings.horizon_days)
    if last < first:
        raise ValueError(
            f"{len(history)} days of history cannot label anything: need at least "
            f"max(window) + horizon = {max(settings.windows) + settings.horizon_days} days"
        )
    return AsOfRange(first, last, settings.asof_stride_days)


@dataclass(frozen=True)
class DayWindow:
    """The ``user_daily`` days [T + start, T + end) around an as-of time T, in days."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"a day window needs end > start, got [{self.start}, {self.end})")

    def days(self, as_of: date) -> tuple[date, date]:
        """The window at T = ``as_of`` 00:00 UTC as dates: [first, end)."""
        return as_of + timedelta(days=self.start), as_of + timedelta(days=self.end)

    def holds(self, offset: int) -> bool:
        """Whether day T + ``offset`` is in the window."""
        return self.start <= offset < self.end

    def frame(self) -> str:
        """The window as a frame over one user's rows ordered by ``date``, the current row
        being day T - 1 (whose feature row is stamped T; it exists for everyone signed up
        before T, even when day T is not in the data yet). RANGE, not ROWS: it counts
        days, not rows, like the one-T forms."""

        def bound(offset: int) -> str:
            if offset == 0:
                return "CURRENT ROW"
            side = "PRECEDING" if offset < 0 else "FOLLOWING"
            return f"INTERVAL {abs(offset)} DAY {side}"

        # Day T + k is the current row's day + (k + 1); the window's last day is T + end - 1.
        return f"RANGE BETWEEN {bound(self.start + 1)} AND {bound(self.end)}"


def lookback_window(active_lookback_days: int) -> DayWindow:
    """Where the population wants an active day: [T - lookback, T), events before T only."""
    if active_lookback_days < 1:
        raise ValueError(f"active_lookback_days must be at least 1, got {active_lookback_days}")
    return DayWindow(-active_lookback_days, 0)


def horizon_window(horizon_days: int) -> DayWindow:
    """Where activity means "stayed": [T, T + horizon)."""
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be at least 1, got {horizon_days}")
    return DayWindow(0, horizon_days)


def _in_population(active_days_before: str) -> str:
    """SQL: at least one active day in the lookback window (no rows: none)."""
    return f"coalesce({active_days_before}, 0) > 0"


def _churned(active_days_after: str) -> str:
    """SQL: the label, 1 when no active day in the horizon window (no rows: none)."""
    return f"CAST(coalesce({active_days_after}, 0) = 0 AS INTEGER)"


def _active_days_over(window: DayWindow) -> str:
    """SQL: a row's user's active days in ``window``, the row's day being T - 1."""
    return f"sum(active) OVER (PARTITION BY user_id ORDER BY date {window.frame()})"


def _active_days_in(window: DayWindow, as_of: date, daily: str) -> str:
    """SQL: ``user_id, active_days`` in ``window`` at one T, per user of ``daily`` with rows in it."""
    first, end = window.days(as_of)
    return f"""
SELECT user_id, sum(active) AS active_days
FROM {daily}
WHERE date >= DATE '{first}' AND date < DATE '{end}'
GROUP BY user_id
"""


def labels_sql(
    asof: AsOfRange,
    lookback: int,
    horizon: int,
    contacted: str | None = None,
    users: str | None = None,
) -> str:
    """One row per (user, T) in the population, with the label, from ``USER_DAILY``.

    The row of day T - 1 stands for (user, T): its frames count the user's active
    days in the lookback and horizon windows. Every user signed up before T has it.
    ``contacted`` is a relation of ``user_id, date``, the nights users were on the
    contact arm (``training.outreach``): a (user, T) whose label window [T, T + horizon)
    overlaps a contact's [D, D + horizon) is left out, since outreach may have kept them.
    ``users`` is a relation of ``user_id``: only their rows (a training sample; the frames
    are per user, so the rows kept are those the whole table gives them).
    """
    before, after = lookback_window(lookback), horizon_window(horizon)
    among = f"\n      AND user_id IN (SELECT user_id FROM {users})" if users else ""
    first, _ = before.days(asof.first)
    _, end = after.days(asof.last)
    # The row of day T - 1, stamped T, stands for (user, T).
    first_row, last_row = day_of(start_of(asof.first)), day_of(start_of(asof.last))
    untouched = ""
    if contacted is not None:
        # T = row date + 1; windows overlap iff T - horizon < D < T + horizon.
        untouched = f"""
  AND NOT EXISTS (
    SELECT 1 FROM {contacted} c
    WHERE c.user_id = framed.user_id
      AND date_diff('day', framed.date, c.date) BETWEEN {2 - horizon} AND {horizon}
  )"""
    return f"""
WITH framed AS (
    SELECT
        user_id,
        date,
        {_active_days_over(before)} AS active_days_before,
        {_active_days_over(after)} AS active_days_after
    FROM {USER_DAILY}
    WHERE date >= DATE '{first}' AND date < DATE '{end}'{among}
)
SELECT
    user_id AS {ENTITY_KEY},
    {stamp_sql("date")} AS {TIMESTAMP_FIELD},
    {_churned("active_days_after")} AS {LABEL}
FROM framed
WHERE date BETWEEN DATE '{first_row}' AND DATE '{last_row}'
  AND date_diff('day', DATE '{first_row}', date) % {asof.stride} = 0
  AND {_in_population("active_days_before")}{untouched}
ORDER BY {TIMESTAMP_FIELD}, {ENTITY_KEY}
"""


def population_sql(as_of: date, lookback: int, daily: str = USER_DAILY) -> str:
    """``user_id`` of the population at T = ``as_of`` 00:00 UTC, sorted: the nightly list.

    ``daily`` is the ``user_daily`` relation; it need only hold the lookback's days.
    """
    return f"""
SELECT user_id AS {ENTITY_KEY}
FROM ({_active_days_in(lookback_window(lookback), as_of, daily)}) AS recent
WHERE {_in_population("active_days")}
ORDER BY user_id
"""


def labels_at_sql(users: str, as_of: date, horizon: int, daily: str = USER_DAILY) -> str:
    """Every row of relation ``users`` (with ``user_id``) and its label at T, by user id.

    The realized label of users scored at T once the horizon is over; a user without
    any ``daily`` row in the window counts as churned. ``daily`` need only hold the
    horizon's days.
    """
    return f"""
SELECT u.*, {_churned("a.active_days")} AS {LABEL}
FROM {users} AS u
LEFT JOIN ({_active_days_in(horizon_window(horizon), as_of, daily)}) AS a
    ON a.user_id = u.{ENTITY_KEY}
ORDER BY u.{ENTITY_KEY}
"""


def in_population(
    days_since_last_activity: int,
    days_since_first_activity: int | None,
    active_lookback_days: int,
) -> bool:
    """Whether the feature row of day D puts its user in the population at T = D + 1 00:00 UTC.

    The user was last active on day D - ``days_since_last_activity`` = T - 1 -
    ``days_since_last_activity``: in iff that day is in ``lookback_window``. A user
    never active (``days_since_first_activity`` null) is out; ``days_since_last_activity``
    then counts from the signup day and says nothing about activity.
    """
    window = lookback_window(active_lookback_days)
    if (
        days_since_last_activity is None
        or pd.isna(days_since_last_activity)
        or (days_since_last_activity < 0)
    ):
        raise ValueError(
            "days_since_last_activity must be a count of days (0 or more), "
            f"got {days_since_last_activity!r}"
        )
    if days_since_first_activity is None or pd.isna(days_since_first_activity):
        return False
    return window.holds(-1 - int(days_since_last_activity))


def in_population_sql(active_lookback_days: int) -> str:
    """SQL: ``in_population`` over the rows of the features table, each the row of day D
    asked about T = D + 1 00:00 UTC. A user never active (``days_since_first_activity``
    null) is out, as there: their ``days_since_last_activity`` counts from the signup day."""
    window = lookback_window(active_lookback_days)
    # The last active day T - 1 - recency is in [T + start, T + end) (DayWindow.holds).
    return (
        f"{DAYS_SINCE_FIRST_ACTIVITY} IS NOT NULL "
        f"AND {RECENCY} BETWEEN {-window.end} AND {-1 - window.start}"
    )


def build_labels(
    settings: Settings, asof: AsOfRange | None = None, users: pd.Index | None = None
) -> pd.DataFrame:
    """Label rows (``user_id``, ``event_timestamp`` = T, ``churned``): Feast's entity dataframe.

    Rows whose label window outreach touched (``training.outreach.contacts``) are left
    out: a contacted user who stayed must not teach the model that such users stay.
    ``users``: only these users' rows (a training sample, ``training.sampling``).
    """
    engine, sql = _labels_query(settings, asof, users)
    return engine.frame(sql)


def label_counts(settings: Settings, asof: AsOfRange) -> pd.Series:
    """Label rows per population user over ``asof``, indexed by user id: what a sample is
    drawn from and sized by, without bringing the rows themselves into memory."""
    engine, sql = _labels_query(settings, asof, None)
    counts = engine.frame(
        f"SELECT {ENTITY_KEY}, count(*) AS label_rows FROM ({sql}) AS labels GROUP BY {ENTITY_KEY}"
    )
    return counts.set_index(ENTITY_KEY)["label_rows"].astype("int64").sort_index()


def as_of_days(settings: Settings) -> AsOfRange:
    """The as-of days the prepared ``user_daily`` history can label."""
    return asof_range(partitions.partition_days(settings.user_daily_path), settings)


def _labels_query(
    settings: Settings, asof: AsOfRange | None, users: pd.Index | None
) -> tuple[Engine, str]:
    """The engine, with ``user_daily`` (and the contacts, the users) registered, and the SQL."""
    history = partitions.partition_days(settings.user_daily_path)
    asof = asof or asof_range(history, settings)
    engine = open_engine(settings)
    register_table(engine, USER_DAILY, settings.user_daily_path, history)
    contacted = outreach.contacts(settings)
    if not contacted.empty:
        engine.register_frame(CONTACTED, contacted)
    if users is not None:
        engine.register_frame(SAMPLED, pd.DataFrame({"user_id": np.asarray(users, dtype=object)}))
    sql = labels_sql(
        asof,
        settings.active_lookback_days,
        settings.horizon_days,
        contacted=None if contacted.empty else CONTACTED,
        users=None if users is None else SAMPLED,
    )
    return engine, sql
