"""Churn labels on a hand-made portal: who is asked about at T, and who left.

History: 2026-03-01 … 2026-04-30. With windows (7,) and a 10-day horizon the
as-of days run from 03-08 (7 days of history before T) to 04-21 (T + 10 days
still inside the data). Lookback: 5 days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from churn.atomic import write_parquet
from ingestion.prepare import build_user_daily
from training.labels import LABEL, AsOfRange, asof_range, build_labels

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
def labels(make_settings) -> pd.DataFrame:
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
    return build_labels(settings).set_index(["user_id", "event_timestamp"])


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
