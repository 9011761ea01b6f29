"""The population a model answers for: users with at least one active day in
[T - active_lookback_days, T) at an as-of time T (each a UTC midnight).

The one owner of that predicate, in its three forms, so they cannot disagree:
``population_sql`` (the nightly list, from ``user_daily`` at one T), ``in_population``
(the API's question, of one feature row) and ``in_population_sql`` (the same question in
SQL, of the rows of the features table). ``training.labels`` renders the training labels'
population from the same window and predicate (``lookback_window``,
``active_in_lookback``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from core.tables import USER_DAILY
from feature_repo.spec import DAYS_SINCE_FIRST_ACTIVITY, ENTITY_KEY, FEATURE_VIEW

RECENCY = "days_since_last_activity"
# The online features ``in_population`` reads: serving fetches them whatever the model uses.
POPULATION_FEATURES = (
    f"{FEATURE_VIEW}:{RECENCY}",
    f"{FEATURE_VIEW}:{DAYS_SINCE_FIRST_ACTIVITY}",
)


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


def active_in_lookback(active_days_before: str) -> str:
    """SQL: at least one active day in the lookback window (no rows: none)."""
    return f"coalesce({active_days_before}, 0) > 0"


def active_days_in(window: DayWindow, as_of: date, daily: str) -> str:
    """SQL: ``user_id, active_days`` in ``window`` at one T, per user of ``daily`` with rows in it."""
    first, end = window.days(as_of)
    return f"""
SELECT user_id, sum(active) AS active_days
FROM {daily}
WHERE date >= DATE '{first}' AND date < DATE '{end}'
GROUP BY user_id
"""


def population_sql(as_of: date, lookback: int, daily: str = USER_DAILY) -> str:
    """``user_id`` of the population at T = ``as_of`` 00:00 UTC, sorted: the nightly list.

    ``daily`` is the ``user_daily`` relation; it need only hold the lookback's days.
    """
    return f"""
SELECT user_id AS {ENTITY_KEY}
FROM ({active_days_in(lookback_window(lookback), as_of, daily)}) AS recent
WHERE {active_in_lookback("active_days")}
ORDER BY user_id
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
