"""The time convention: day D's row is stamped D+1 00:00 UTC, T is a UTC midnight."""

from datetime import UTC, date, datetime, timedelta, timezone

import duckdb
import pandas as pd
import pytest

from core.timeline import (
    day_of,
    days_of,
    horizon_complete,
    horizon_last_day,
    last_complete_as_of,
    midnight,
    require_midnight,
    stamp_of,
    stamp_sql,
    start_of,
)

PARIS_SUMMER = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("day", "stamp"),
    [
        (date(2026, 1, 31), datetime(2026, 2, 1, tzinfo=UTC)),  # a month end
        (date(2026, 12, 31), datetime(2027, 1, 1, tzinfo=UTC)),  # a year end
        (date(2028, 2, 28), datetime(2028, 2, 29, tzinfo=UTC)),  # into a leap day
        (date(2028, 2, 29), datetime(2028, 3, 1, tzinfo=UTC)),  # out of it
    ],
)
def test_stamp_and_day_round_trip(day, stamp):
    assert stamp_of(day) == stamp
    assert day_of(stamp) == day
    assert day_of(stamp_of(day)) == day


def test_day_of_an_instant_inside_a_day_is_the_newest_complete_day():
    assert day_of(datetime(2026, 5, 2, 17, 30, tzinfo=UTC)) == date(2026, 5, 1)
    # 01:30 in Paris on 05-02 is still 05-01 in UTC: day 04-30 is the newest complete.
    assert day_of(datetime(2026, 5, 2, 1, 30, tzinfo=PARIS_SUMMER)) == date(2026, 4, 30)


def test_midnight_of_an_aware_instant_outside_utc():
    # 01:30 in Paris on 05-02 is 23:30 UTC on 05-01: T is 05-01 00:00 UTC.
    assert midnight(datetime(2026, 5, 2, 1, 30, tzinfo=PARIS_SUMMER)) == datetime(
        2026, 5, 1, tzinfo=UTC
    )
    assert midnight(datetime(2026, 5, 2, 23, 59, tzinfo=UTC)) == start_of(date(2026, 5, 2))


@pytest.mark.parametrize("refuse", [day_of, midnight, require_midnight])
def test_naive_datetimes_are_refused(refuse):
    with pytest.raises(ValueError, match="timezone-aware"):
        refuse(datetime(2026, 5, 2))


def test_require_midnight():
    assert require_midnight(datetime(2026, 5, 2, 2, tzinfo=PARIS_SUMMER)) == datetime(
        2026, 5, 2, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="UTC midnight"):
        require_midnight(datetime(2026, 5, 2, 6, tzinfo=UTC))


def test_horizon():
    # T = 03-10, horizon 5: the window is [03-10, 03-15), its last day 03-14.
    assert horizon_last_day(date(2026, 3, 10), 5) == date(2026, 3, 14)
    assert horizon_complete(date(2026, 3, 10), 5, last_day=date(2026, 3, 14))
    assert not horizon_complete(date(2026, 3, 10), 5, last_day=date(2026, 3, 13))
    assert last_complete_as_of(date(2026, 3, 14), 5) == date(2026, 3, 10)


def test_days_of_a_stamp_column():
    stamps = pd.Series(pd.to_datetime(["2028-02-29", "2027-01-01"], utc=True))
    assert days_of(stamps).tolist() == [pd.Timestamp("2028-02-28"), pd.Timestamp("2026-12-31")]


def test_stamp_sql_matches_stamp_of():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # as core.sql_engine.connect does
    sql = f"SELECT {stamp_sql('d')} FROM (SELECT DATE '2028-02-28' AS d)"
    assert con.execute(sql).fetchone()[0] == stamp_of(date(2028, 2, 28))
