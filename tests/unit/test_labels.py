"""Churn labels on a hand-made portal: who is asked about at T, and who left.

History: 2026-03-01 … 2026-04-30. With windows (7,) and a 10-day horizon the
as-of days run from 03-08 (7 days of history before T) to 04-21 (T + 10 days
still inside the data). Lookback: 5 days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from churn.atomic import write_parquet
from churn.settings import Settings
from ingestion import partitions
from ingestion.features import build_rolling_features
from ingestion.prepare import build_user_daily
from training.labels import LABEL, AsOfRange, asof_range, build_labels, in_population

T = pd.Timestamp("2026-04-01", tz="UTC")
HORIZON = 10


def _events(rows: list[tuple[str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "event_time"])
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True, format="ISO8601")
    frame.insert(0, "event_id", [f"e{i}" for i in range(len(frame))])
    frame["event_type"] = "login"
    for column in ("course_id", "watch_minutes", "quiz_score", "amount"):
        frame[column] = None if column == "course_id" else np.nan
    return frame


EVENTS = [
    ("stays", "2026-03-30 10:00"),  # active in the lookback …
    ("stays", "2026-04-05 10:00"),  # … and inside the horizon
    ("at_t", "2026-03-31 10:00"),
    ("at_t", "2026-04-01 00:00:00"),  # exactly at T: inside [T, T + h)
    ("at_end", "2026-03-31 10:00"),
    ("at_end", "2026-04-11 00:00:00"),  # exactly at T + h: outside, so churned
    ("silent", "2026-03-31 10:00"),  # nothing after T
    ("gone", "2026-03-20 10:00"),  # last active before the lookback: not asked about
    ("late", "2026-03-31 12:00"),  # signed up at T: not asked about
    ("anchor", "2026-03-01 09:00"),  # starts the history on 03-01
    ("anchor", "2026-04-30 09:00"),  # and ends it on 04-30
]


@pytest.fixture
def portal(make_settings) -> Settings:
    """The hand-made portal's settings, with ``user_daily`` built."""
    settings = make_settings(windows=(7,), horizon_days=HORIZON, active_lookback_days=5)
    users = pd.DataFrame(
        {
            "user_id": ["stays", "at_t", "at_end", "silent", "gone", "late", "anchor"],
            "signup_time": pd.to_datetime(["2026-03-01"] * 6 + ["2026-03-01"], utc=True),
            "plan": "free",
            "country": "DE",
            "acquisition_channel": "organic",
        }
    )
    users.loc[users.user_id == "late", "signup_time"] = T
    write_parquet(users, settings.validated_dir / "users.parquet")
    write_parquet(_events(EVENTS), settings.validated_dir / "events.parquet")
    build_user_daily(settings, now=datetime(2026, 6, 1, tzinfo=UTC))
    return settings


@pytest.fixture
def labels(portal) -> pd.DataFrame:
    return build_labels(portal).set_index(["user_id", "event_timestamp"])


@pytest.mark.parametrize(
    ("user", "churned"),
    [("stays", 0), ("at_t", 0), ("at_end", 1), ("silent", 1)],
)
def test_label_at_t(labels, user, churned):
    assert labels.loc[(user, T), LABEL] == churned


@pytest.mark.parametrize("user", ["gone", "late"])
def test_not_in_the_population_at_t(labels, user):
    assert (user, T) not in labels.index


def test_asof_days_have_full_windows_and_horizons(labels):
    stamps = labels.index.get_level_values("event_timestamp")
    assert stamps.min() >= pd.Timestamp("2026-03-08", tz="UTC")  # 7 days of history before T
    assert stamps.max() <= pd.Timestamp("2026-04-21", tz="UTC")  # 04-21 + 10 days = 05-01 00:00
    # at_end's activity on 04-11 puts it in the population until 04-16 (5-day lookback).
    assert labels.xs("at_end", level="user_id").index.max() == pd.Timestamp("2026-04-16", tz="UTC")


def test_asof_range_and_stride(make_settings):
    settings = make_settings(windows=(7, 30), horizon_days=30, asof_stride_days=7)
    history = [date(2026, 1, 1) + timedelta(days=i) for i in range(100)]
    got = asof_range(history, settings)
    assert got == AsOfRange(date(2026, 1, 31), date(2026, 3, 12), 7)
    assert got.days()[:2] == [date(2026, 1, 31), date(2026, 2, 7)]


def test_too_short_a_history_says_so(make_settings):
    settings = make_settings(windows=(30,), horizon_days=30)
    with pytest.raises(ValueError, match="at least max\\(window\\) \\+ horizon = 60 days"):
        asof_range([date(2026, 1, 1), date(2026, 1, 31)], settings)


@pytest.mark.parametrize(
    ("days_since", "lookback", "inside"),
    [
        (0, 14, True),  # active on D, the day before T
        (1, 14, True),
        (13, 14, True),  # active on D - 13 = T - 14: the first day of [T - 14, T)
        (14, 14, False),  # active on T - 15: one day before the lookback
        (15, 14, False),
        (98, 14, False),  # the demo user of the issue
        (0, 1, True),  # a one-day lookback holds day D alone
        (1, 1, False),
        (4, 5, True),
        (5, 5, False),
    ],
)
def test_in_population_by_days_since_last_activity(days_since, lookback, inside):
    assert in_population(days_since, 30, lookback) is inside


@pytest.mark.parametrize("never", [None, float("nan"), pd.NA])
def test_a_user_never_active_is_out_whatever_the_signup(never):
    """Counted from the signup day, days_since_last_activity would let them in."""
    assert in_population(0, never, 14) is False
    assert in_population(3, 3, 14) is True


@pytest.mark.parametrize(
    ("days_since", "lookback", "message"),
    [
        (-1, 14, "days_since_last_activity must be a count of days"),
        (None, 14, "days_since_last_activity must be a count of days"),
        (3, 0, "active_lookback_days must be at least 1, got 0"),
    ],
)
def test_in_population_refuses_what_is_no_count_of_days(days_since, lookback, message):
    with pytest.raises(ValueError, match=message):
        in_population(days_since, 30, lookback)


def test_in_population_of_the_feature_rows_is_the_labelled_population(portal, labels):
    """The row-level rule the API applies and ``labels_sql`` agree at every as-of time,
    ``late`` included (signed up at T, never active: out, though its signup is recent)."""
    build_rolling_features(portal)
    glob = partitions.table_glob(portal.features_path)
    rows = duckdb.execute(
        "SELECT user_id, event_timestamp, days_since_last_activity, days_since_first_activity "
        f"FROM read_parquet('{glob}', hive_partitioning = true)"
    ).df()
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    asked = labels.index.get_level_values("event_timestamp").unique()
    rows = rows[rows["event_timestamp"].isin(asked)]
    ruled = {
        (user, stamp)
        for user, stamp, days, first in rows.itertuples(index=False)
        if in_population(days, first, portal.active_lookback_days)
    }
    assert ruled == set(labels.index)
    assert ("late", T + pd.Timedelta(days=1)) in set(
        zip(rows.user_id, rows.event_timestamp, strict=True)
    )
    assert ("at_end", pd.Timestamp("2026-04-16", tz="UTC")) in ruled  # 04-11 + 5 days: still in
    assert ("at_end", pd.Timestamp("2026-04-17", tz="UTC")) not in ruled
