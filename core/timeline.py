"""The product's time convention, stated once; every stage derives its instants here.

- Day D's feature row describes the whole UTC calendar day D, so it is only known once
  the day is over: it is stamped D+1 00:00 UTC (``stamp_of``; ``day_of`` goes back).
- A night's scoring instant T is a UTC midnight (``midnight``); it sees the rows stamped
  at or before T, the newest being day T-1's. A batch is named by T's date, and
  ``start_of`` turns such a date back into T.
- A label window at T is the days [T, T + horizon): the night is judged once
  ``user_daily`` holds its last day (``horizon_last_day``, ``horizon_complete``).

Instants are timezone-aware: a naive datetime has no defined UTC day, so it is refused.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pandas as pd

DAY = timedelta(days=1)


def _utc(instant: datetime, name: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {instant.isoformat()}")
    return instant.astimezone(UTC)


def start_of(day: date) -> datetime:
    """``day`` 00:00 UTC: the instant T a batch date names."""
    return datetime.combine(day, time.min, UTC)


def stamp_of(day: date) -> datetime:
    """The timestamp of day ``day``'s feature row: ``day`` + 1 00:00 UTC, when it is complete."""
    return start_of(day + DAY)


def day_of(instant: datetime) -> date:
    """The newest day whose row is stamped at or before ``instant``; of a stamp, its day."""
    return _utc(instant, "instant").date() - DAY


def days_of(stamps: pd.Series) -> pd.Series:
    """``day_of`` over a column of aware stamps: each day, as a naive datetime at 00:00."""
    return stamps.dt.tz_convert(UTC).dt.tz_localize(None).dt.floor("D") - pd.Timedelta(DAY)


def stamp_sql(day_column: str) -> str:
    """SQL: ``stamp_of`` of a DATE column or expression, as a TIMESTAMPTZ."""
    return f"CAST({day_column} + INTERVAL 1 DAY AS TIMESTAMPTZ)"


def midnight(instant: datetime) -> datetime:
    """00:00 UTC of ``instant``'s UTC date: the T of a night run at ``instant``."""
    return start_of(_utc(instant, "instant").date())


def require_midnight(as_of: datetime) -> datetime:
    """``as_of`` in UTC, checked to be a UTC midnight (a T): features change only at
    midnights, so a T inside a day would score the same rows under a misleading name."""
    as_of = _utc(as_of, "as_of")
    if as_of != midnight(as_of):
        raise ValueError(f"as_of must be a UTC midnight (00:00), got {as_of.isoformat()}")
    return as_of


def horizon_last_day(as_of: date, horizon_days: int) -> date:
    """The last day of the label window [T, T + horizon) at T = ``as_of`` 00:00 UTC."""
    return as_of + timedelta(days=horizon_days - 1)


def horizon_complete(as_of: date, horizon_days: int, last_day: date) -> bool:
    """Whether ``user_daily`` ending on ``last_day`` holds the whole label window at T."""
    return horizon_last_day(as_of, horizon_days) <= last_day


def last_complete_as_of(last_day: date, horizon_days: int) -> date:
    """The newest T's date whose label window ``user_daily`` ending on ``last_day`` holds."""
    return last_day - timedelta(days=horizon_days - 1)
