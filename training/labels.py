"""Churn labels: who is about to leave, asked at as-of times T (each a UTC midnight).

The one owner of the label; the population is the served model's (``served.population``),
both "active days in a day range":
Population at T: users with at least one active day in [T - active_lookback_days, T)
(``lookback_window``); those already gone, or not signed up yet, are not the question.
Label: ``churned`` = 1 when the user has no active day in [T, T + horizon)
(``horizon_window``), including a user without any ``user_daily`` row in it.
Every use renders its SQL from those windows and the two predicates, so they cannot
disagree: ``labels_sql`` (training, many T), ``labels_at_sql`` (the realized labels of
the users a batch scored), and ``served.population``'s ``population_sql`` (the nightly
list, one T), ``in_population`` and ``in_population_sql`` (the API's question).
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
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from served.population import DayWindow, active_days_in, active_in_lookback, lookback_window
from training import outreach

LABEL = "churned"
SAMPLED = "training_users"  # the relation of the users a training sample holds
CONTACTED = "outreach_contacted"  # the relation of the nights users were on the contact arm


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
        needed = max(settings.windows) + settings.horizon_days
        span = (history[-1] - history[0]).days + 1
        raise ValueError(
            f"{len(history)} days of history cannot label anything: need at least "
            f"max(window) + horizon = {needed} days ({needed - span} more)"
        )
    return AsOfRange(first, last, settings.asof_stride_days)


def horizon_window(horizon_days: int) -> DayWindow:
    """Where activity means "stayed": [T, T + horizon)."""
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be at least 1, got {horizon_days}")
    return DayWindow(0, horizon_days)


def _churned(active_days_after: str) -> str:
    """SQL: the label, 1 when no active day in the horizon window (no rows: none)."""
    return f"CAST(coalesce({active_days_after}, 0) = 0 AS INTEGER)"


def _active_days_over(window: DayWindow) -> str:
    """SQL: a row's user's active days in ``window``, the row's day being T - 1."""
    return f"sum(active) OVER (PARTITION BY user_id ORDER BY date {window.frame()})"


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
    contact arm (``training.outreach.contacts``): a (user, T) whose label window
    [T, T + horizon) overlaps a contact's [D, D + horizon) is left out, since outreach
    may have kept them.
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
  AND {active_in_lookback("active_days_before")}{untouched}
ORDER BY {TIMESTAMP_FIELD}, {ENTITY_KEY}
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
LEFT JOIN ({active_days_in(horizon_window(horizon), as_of, daily)}) AS a
    ON a.user_id = u.{ENTITY_KEY}
ORDER BY u.{ENTITY_KEY}
"""


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
