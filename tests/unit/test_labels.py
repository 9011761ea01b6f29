"""Churn labels on a hand-made portal: who is asked about at T, and who left; the
training, nightly and realized forms of the rule agree on a hand-built user_daily.

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

from core import partitions
from core.atomic import write_parquet
from core.partitions import partition_days
from core.settings import Settings
from core.sql_engine import DuckEngine
from core.tables import USER_DAILY, register_table
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features
from monitor.outcomes import realized_labels_sql
from served.population import DayWindow, in_population, lookback_window, population_sql
from training.labels import LABEL, AsOfRange, asof_range, build_labels, horizon_window, labels_sql

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
    write_parquet(users, settings.validated_users_path)
    write_parquet(_events(EVENTS), settings.validated_events_legacy_path)
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
    with pytest.raises(ValueError, match="horizon = 60 days \\(29 more\\)"):
        asof_range([date(2026, 1, 1), date(2026, 1, 31)], settings)  # 31 days
    enough = [date(2026, 1, 1) + timedelta(days=i) for i in range(60)]
    assert asof_range(enough, settings).first == asof_range(enough, settings).last  # one T


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


# A hand-built user_daily for the three forms of the rule: signup day and active days.
# Lookback 3 days, horizon 4: the as-of days 03-04 … 03-17 all have whole windows.
DAILY_FIRST, DAILY_LAST = date(2026, 3, 1), date(2026, 3, 20)
LOOKBACK, SHORT_HORIZON = 3, 4
ACTIVITY = {
    "every_other_day": (1, range(1, 21, 2)),
    "quits_on_8": (1, [2, 5, 8]),
    "back_on_15": (1, [1, 2, 15]),
    "signs_up_on_9": (9, [9, 10]),
    "signs_up_on_12_idle": (12, []),
    "never": (1, []),
    "once_on_17": (1, [17]),
    "edges": (1, [4, 11, 20]),
}


def _reckoned(user: str, as_of: date) -> tuple[bool, int]:
    """(in the population, churned) at T = ``as_of``, by hand."""
    active = {date(2026, 3, d) for d in ACTIVITY[user][1]}
    before = any(as_of - timedelta(days=LOOKBACK) <= d < as_of for d in active)
    after = any(as_of <= d < as_of + timedelta(days=SHORT_HORIZON) for d in active)
    return before, int(not after)


def test_training_batch_and_realized_forms_agree(make_settings):
    """The population at T from the nightly form is the training form's labelled users at
    T, and the realized labels of those users are the training labels at T."""
    settings = make_settings()
    rows = [
        (user, DAILY_FIRST + timedelta(days=i), int(i + 1 in days))
        for user, (signup, days) in ACTIVITY.items()
        for i in range(signup - 1, (DAILY_LAST - DAILY_FIRST).days + 1)
    ]
    engine = DuckEngine(settings)
    engine.register_frame("rows", pd.DataFrame(rows, columns=["user_id", "date", "active"]))
    engine.write_table(
        "SELECT user_id, CAST(date AS DATE) AS date, CAST(active AS BIGINT) AS active FROM rows",
        settings.user_daily_path,
    )
    register_table(
        engine, USER_DAILY, settings.user_daily_path, partition_days(settings.user_daily_path)
    )
    asof = AsOfRange(date(2026, 3, 4), date(2026, 3, 17), 1)
    trained = engine.frame(labels_sql(asof, LOOKBACK, SHORT_HORIZON))
    trained["day"] = trained["event_timestamp"].dt.date
    glob = partitions.table_glob(settings.user_daily_path)
    for as_of in asof.days():
        at_t = trained[trained["day"] == as_of].set_index("user_id")[LABEL]
        nightly = [row[0] for row in engine.rows(population_sql(as_of, LOOKBACK))]
        assert nightly == sorted(at_t.index), as_of
        assert set(nightly) == {u for u in ACTIVITY if _reckoned(u, as_of)[0]}, as_of
        engine.register_frame("scored", pd.DataFrame({"user_id": nightly, "churn_risk": 0.5}))
        realized = engine.frame(realized_labels_sql("scored", glob, as_of, SHORT_HORIZON))
        assert realized.set_index("user_id")[LABEL].to_dict() == at_t.to_dict(), as_of
        assert at_t.to_dict() == {u: _reckoned(u, as_of)[1] for u in nightly}, as_of
    assert 0 < trained[LABEL].sum() < len(trained)  # both labels occur: a real check
    # Tonight's T, the day after the data ends (the nightly run's): same population.
    tonight = DAILY_LAST + timedelta(days=1)
    labelled = engine.frame(labels_sql(AsOfRange(tonight, tonight, 1), LOOKBACK, SHORT_HORIZON))
    nightly = [row[0] for row in engine.rows(population_sql(tonight, LOOKBACK))]
    assert sorted(labelled["user_id"]) == nightly == ["edges", "every_other_day"]  # 03-18 … 03-20


@pytest.mark.parametrize(
    ("window", "frame"),
    [
        # The current row is day T - 1: [T - 14, T) is 13 days before it to itself.
        (lookback_window(14), "RANGE BETWEEN INTERVAL 13 DAY PRECEDING AND CURRENT ROW"),
        (
            horizon_window(30),
            "RANGE BETWEEN INTERVAL 1 DAY FOLLOWING AND INTERVAL 30 DAY FOLLOWING",
        ),
        (horizon_window(1), "RANGE BETWEEN INTERVAL 1 DAY FOLLOWING AND INTERVAL 1 DAY FOLLOWING"),
    ],
)
def test_a_window_is_the_same_days_as_a_frame_and_as_dates(window, frame):
    assert window.frame() == frame
    first, end = window.days(date(2026, 4, 1))
    assert (first - date(2026, 4, 1)).days == window.start
    assert (end - date(2026, 4, 1)).days == window.end


def test_windows_refuse_what_is_no_window():
    with pytest.raises(ValueError, match="horizon_days must be at least 1"):
        horizon_window(0)
    with pytest.raises(ValueError, match="end > start"):
        DayWindow(0, 0)
