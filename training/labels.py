"""Churn labels: who is about to leave, asked at as-of times T (each a UTC midnight).

Population at T: users who signed up before T and were active at least once in
the ``active_lookback_days`` before T; those already gone are not the question.
``labels_sql`` asks it of ``user_daily``, ``in_population`` of one feature row (the
API's question), ``batch.score.population_sql`` of the nightly list.
Label: ``churned`` = 1 when the user has no learning activity in [T, T + horizon).
Features at T use events before T (the row of day T-1, stamped T), so every
event is either in the features or in the label window, never both or neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from churn.settings import Settings
from feature_repo.spec import (
    DAYS_SINCE_FIRST_ACTIVITY,
    ENTITY_KEY,
    FEATURE_VIEW,
    TIMESTAMP_FIELD,
)
from ingestion import partitions
from ingestion.prepare import USER_DAILY, MissingInputError, register_table
from ingestion.sql_engine import open_engine
from training.references import RECENCY

LABEL = "churned"
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
    last = history[-1] + timedelta(days=1) - timedelta(days=settings.horizon_days)
    if last < first:
        raise ValueError(
            f"{len(history)} days of history cannot label anything: need at least "
            f"max(window) + horizon = {max(settings.windows) + settings.horizon_days} days"
        )
    return AsOfRange(first, last, settings.asof_stride_days)


def labels_sql(asof: AsOfRange, lookback: int, horizon: int) -> str:
    """One row per (user, T) in the population, with the label, from ``USER_DAILY``.

    Row ``date`` = D - 1 holds the day before T; its lookback frame is days
    [T - lookback, T) and its horizon frame days [T, T + horizon).
    """
    first_row, last_row = asof.first - timedelta(days=1), asof.last - timedelta(days=1)
    return f"""
WITH framed AS (
    SELECT
        user_id,
        date,
        sum(active) OVER (
            PARTITION BY user_id ORDER BY date ROWS BETWEEN {lookback - 1} PRECEDING AND CURRENT ROW
        ) AS active_days_before,
        sum(active) OVER (
            PARTITION BY user_id ORDER BY date ROWS BETWEEN 1 FOLLOWING AND {horizon} FOLLOWING
        ) AS active_days_after
    FROM {USER_DAILY}
    WHERE date BETWEEN DATE '{first_row - timedelta(days=lookback)}'
                   AND DATE '{last_row + timedelta(days=horizon)}'
)
SELECT
    user_id AS {ENTITY_KEY},
    CAST(date + INTERVAL 1 DAY AS TIMESTAMPTZ) AS {TIMESTAMP_FIELD},
    CAST(coalesce(active_days_after, 0) = 0 AS INTEGER) AS {LABEL}
FROM framed
WHERE date BETWEEN DATE '{first_row}' AND DATE '{last_row}'
  AND date_diff('day', DATE '{first_row}', date) % {asof.stride} = 0
  AND active_days_before > 0
ORDER BY {TIMESTAMP_FIELD}, {ENTITY_KEY}
"""


def in_population(
    days_since_last_activity: int,
    days_since_first_activity: int | None,
    active_lookback_days: int,
) -> bool:
    """Whether the feature row of day D puts its user in the population at T = D + 1 00:00 UTC.

    The population wants an active day in [T - lookback, T), the days D - lookback + 1 … D.
    A user never active (``days_since_first_activity`` null) is out; ``days_since_last_activity``
    then counts from the signup day and says nothing about activity. Otherwise the user was
    last active on day D - ``days_since_last_activity``: in iff that is < the lookback.
    """
    if active_lookback_days < 1:
        raise ValueError(f"active_lookback_days must be at least 1, got {active_lookback_days}")
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
    return days_since_last_activity < active_lookback_days


def build_labels(settings: Settings, asof: AsOfRange | None = None) -> pd.DataFrame:
    """Label rows (``user_id``, ``event_timestamp`` = T, ``churned``): Feast's entity dataframe."""
    history = partitions.partition_days(settings.user_daily_path)
    asof = asof or asof_range(history, settings)
    engine = open_engine(settings)
    register_table(engine, USER_DAILY, settings.user_daily_path, history)
    sql = labels_sql(asof, settings.active_lookback_days, settings.horizon_days)
    return engine.frame(sql)
