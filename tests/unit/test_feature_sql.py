"""Feature SQL against hand-computed expectations on a tiny portal.

u1: signs up 2026-03-01, active on days 1, 3 and 8, pays on day 2, fails a payment on day 9.
u2: signs up 2026-03-05 23:30; first login exactly at midnight of day 6.
u3: active on days 1 and 2 (a ticket on day 2), then silent: a churned user.
u4: signed up before the history starts; active on days 4 and 12 only (a gap).
"""

from __future__ import annotations

import math
import shutil
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import duckdb
import pandas as pd
import pytest

from core import partitions
from core.atomic import write_parquet
from core.settings import get_settings
from feature_repo.spec import feature_names
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features

NAN = float("nan")


def _users() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4"],
            "signup_time": pd.to_datetime(
                ["2026-03-01 09:00", "2026-03-05 23:30", "2026-03-01 08:00", "2026-02-20 10:00"],
                utc=True,
            ),
            "plan": ["paid", "free", "free", "unknown"],
            "country": ["DE", "US", "IN", "unknown"],
            "acquisition_channel": ["organic", "social", "referral", "unknown"],
        }
    )


EVENTS = [
    # user, time, type, course, minutes, score, amount
    ("u1", "2026-03-01 10:00", "login", None, NAN, NAN, NAN),
    ("u1", "2026-03-01 10:05", "video_watch", "k8s-101", 20.0, NAN, NAN),
    ("u1", "2026-03-02 03:00", "payment_success", None, NAN, NAN, 29.0),
    ("u1", "2026-03-03 12:00", "quiz_attempt", "k8s-101", NAN, 60.0, NAN),
    ("u1", "2026-03-03 23:59:59", "quiz_attempt", "tf-201", NAN, 90.0, NAN),
    ("u1", "2026-03-08 08:00", "login", None, NAN, NAN, NAN),
    ("u1", "2026-03-09 03:00", "payment_failed", None, NAN, NAN, 29.0),
    ("u2", "2026-03-06 00:00:00", "login", None, NAN, NAN, NAN),
    ("u3", "2026-03-01 09:00", "login", None, NAN, NAN, NAN),
    ("u3", "2026-03-02 09:00", "login", None, NAN, NAN, NAN),
    ("u3", "2026-03-02 09:30", "support_ticket", None, NAN, NAN, NAN),
    ("u4", "2026-03-04 18:00", "video_watch", "aws-101", 15.0, NAN, NAN),
    ("u4", "2026-03-12 18:00", "login", None, NAN, NAN, NAN),
]


def _events(rows: list[tuple] = EVENTS) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows,
        columns=[
            "user_id",
            "event_time",
            "event_type",
            "course_id",
            "watch_minutes",
            "quiz_score",
            "amount",
        ],
    )
    frame.insert(0, "event_id", [f"e{i}" for i in range(len(frame))])
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True, format="ISO8601")
    return frame


def _build(settings, users: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    write_parquet(users, settings.validated_dir / "users.parquet")
    write_parquet(events, settings.validated_dir / "events.parquet")
    build_user_daily(settings, now=datetime(2026, 4, 1, tzinfo=UTC))
    build_rolling_features(settings)
    return _read(settings.features_path)


def _read(root) -> pd.DataFrame:
    glob = partitions.table_glob(root)
    return duckdb.sql(
        f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY user_id, date"
    ).df()


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> pd.DataFrame:
    tmp = tmp_path_factory.mktemp("features")
    settings = get_settings(data_dir=tmp / "data", artifacts_dir=tmp / "artifacts")
    return _build(settings, _users(), _events())


def _row(features: pd.DataFrame, user: str, day: int) -> pd.Series:
    match = features[(features.user_id == user) & (features.date == pd.Timestamp(2026, 3, day))]
    assert len(match) == 1, f"expected one row for {user} on day {day}, got {len(match)}"
    return match.iloc[0]


# (user, day, feature, expected): computed by hand from EVENTS above.
EXPECTED = [
    ("u1", 1, "active_days_7d", 1),
    ("u1", 1, "watch_minutes_7d", 20.0),
    ("u1", 1, "quiz_score_mean_7d", NAN),
    ("u1", 1, "days_since_last_activity", 0),
    ("u1", 1, "tenure_days", 0),
    ("u1", 3, "active_days_7d", 2),
    ("u1", 3, "quiz_attempts_7d", 2),
    ("u1", 3, "quiz_score_mean_7d", 75.0),
    ("u1", 3, "distinct_courses_7d", 2),
    ("u1", 3, "payments_ok_7d", 1),
    ("u1", 7, "active_days_7d", 2),  # window 1..7 still holds day 1
    ("u1", 7, "days_since_last_activity", 4),
    ("u1", 8, "active_days_7d", 2),  # window 2..8: days 3 and 8
    ("u1", 8, "watch_minutes_7d", 0.0),  # day 1 left the window
    ("u1", 8, "active_days_14d", 3),
    ("u1", 8, "active_days_trend_7d_30d", (2 / 7) / (3 / 8)),  # rates per observed day
    ("u1", 8, "days_since_last_activity", 0),
    ("u1", 9, "payments_ok_7d", 0),  # day 2 left the window
    ("u1", 9, "payments_failed_7d", 1),
    ("u1", 10, "distinct_courses_7d", 0),
    ("u1", 10, "distinct_courses_14d", 2),  # distinct, not a sum of daily counts
    ("u1", 10, "quiz_score_mean_7d", NAN),
    ("u1", 10, "quiz_score_mean_14d", 75.0),
    ("u2", 5, "logins_7d", 0),  # signup day, before the midnight login
    ("u2", 5, "tenure_days", 0),
    ("u2", 5, "active_days_trend_7d_30d", NAN),  # no activity at all yet
    ("u2", 6, "logins_7d", 1),
    ("u2", 6, "days_since_last_activity", 0),
    ("u2", 12, "logins_7d", 1),
    ("u2", 12, "days_since_last_activity", 6),
    ("u3", 2, "tickets_7d", 1),
    ("u3", 12, "active_days_7d", 0),
    ("u3", 12, "active_days_14d", 2),
    ("u3", 12, "tickets_7d", 0),
    ("u3", 12, "tickets_14d", 1),
    ("u3", 12, "days_since_last_activity", 10),
    ("u4", 1, "tenure_days", 9),
    ("u4", 3, "days_since_last_activity", 11),  # no activity seen yet: since signup
    ("u4", 11, "days_since_last_activity", 7),
    ("u4", 11, "watch_minutes_14d", 15.0),
    ("u4", 12, "days_since_last_activity", 0),
    # Lifetime: since the first day in the data (2026-03-01), whatever the windows.
    ("u1", 3, "active_days_lifetime", 2),
    ("u1", 3, "quiz_attempts_lifetime", 2),
    ("u1", 3, "amount_paid_lifetime", 29.0),
    ("u1", 3, "distinct_courses_lifetime", 2),
    ("u1", 3, "days_since_first_activity", 2),
    ("u1", 3, "days_since_last_payment", 1),
    ("u1", 3, "days_since_last_video", 2),
    ("u1", 3, "days_since_last_quiz", 0),
    ("u1", 3, "days_since_last_ticket", NAN),  # never: null, not "long ago"
    ("u1", 3, "mean_days_between_active_days", 2.0),
    ("u1", 10, "active_days_lifetime", 3),
    ("u1", 10, "logins_lifetime", 2),
    ("u1", 10, "payments_failed_lifetime", 1),
    ("u1", 10, "distinct_courses_lifetime", 2),  # none in the last 7 days, still 2 ever
    ("u1", 10, "active_days_per_day_lifetime", 3 / 10),
    ("u1", 10, "amount_paid_per_day_lifetime", 29 / 10),
    ("u1", 10, "amount_paid_7d", 0.0),  # day 2 left the window
    ("u1", 10, "amount_paid_14d", 29.0),
    ("u1", 10, "mean_days_between_active_days", (9 - 2) / (3 - 1)),
    ("u2", 5, "active_days_lifetime", 0),
    ("u2", 5, "days_since_first_activity", NAN),
    ("u2", 5, "mean_days_between_active_days", NAN),
    ("u2", 12, "days_since_first_activity", 6),
    ("u2", 12, "mean_days_between_active_days", NAN),  # one active day: no gap yet
    ("u3", 12, "tickets_lifetime", 1),
    ("u3", 12, "days_since_last_ticket", 10),
    ("u3", 12, "mean_days_between_active_days", 1.0),
    ("u4", 3, "active_days_lifetime", 0),
    ("u4", 3, "days_since_last_video", NAN),
    ("u4", 12, "active_days_per_day_lifetime", 2 / 12),  # observed since the history starts
    ("u4", 12, "watch_minutes_lifetime", 15.0),
    ("u4", 12, "distinct_courses_lifetime", 1),
    ("u4", 12, "days_since_last_video", 8),
    ("u4", 12, "days_since_first_activity", 8),  # first active on day 4
    ("u4", 12, "mean_days_between_active_days", 8.0),
]


@pytest.mark.parametrize(("user", "day", "feature", "expected"), EXPECTED)
def test_feature_values(features, user, day, feature, expected):
    value = _row(features, user, day)[feature]
    if isinstance(expected, float) and math.isnan(expected):
        assert pd.isna(value), f"{feature} of {user} on day {day}: expected null, got {value}"
    else:
        assert value == pytest.approx(expected), f"{feature} of {user} on day {day}"


def test_rows_per_user_span_signup_to_data_end(features):
    spans = features.groupby("user_id").date.agg(["min", "max", "count"])
    assert spans.loc["u1"].tolist() == [pd.Timestamp(2026, 3, 1), pd.Timestamp(2026, 3, 12), 12]
    assert spans.loc["u2"].tolist() == [pd.Timestamp(2026, 3, 5), pd.Timestamp(2026, 3, 12), 8]
    # u3 churned on day 2 but keeps (empty) rows: silence is the signal.
    assert spans.loc["u3", "count"] == 12
    # u4 signed up before the first event: history starts at the first event day.
    assert spans.loc["u4", "min"] == pd.Timestamp(2026, 3, 1)


def test_event_timestamp_is_the_end_of_the_day(features):
    stamps = features.event_timestamp.dt.tz_convert("UTC")
    assert (stamps == (features.date + pd.Timedelta(days=1)).dt.tz_localize("UTC")).all()


def test_columns_follow_the_spec(features):
    assert list(features.columns) == [
        "user_id",
        "event_timestamp",
        *feature_names((7, 14, 30)),
        "date",
    ]


def test_windows_come_from_settings(make_settings):
    frame = _build(make_settings(windows=(3, 10)), _users(), _events())
    assert "logins_3d" in frame.columns and "logins_7d" not in frame.columns
    assert "active_days_trend_3d_10d" in frame.columns
    # u1 on day 8: window 6..8 holds day 8 only.
    assert _row(frame, "u1", 8)["active_days_3d"] == 1


def test_daily_run_equals_full_build(make_settings):
    """Day 12 built alone (prepare --as-of, features --as-of) equals the full build's day 12."""
    settings = make_settings()
    full = _build(settings, _users(), _events())
    for root in (settings.user_daily_path, settings.features_path):
        partitions.partition_dir(root, date(2026, 3, 12)).rename(root.parent / f"{root.name}-day12")
    build_user_daily(settings, as_of=date(2026, 3, 12))
    build_rolling_features(settings, as_of=date(2026, 3, 12))
    daily = _read(settings.features_path)
    expected = full[full.date == pd.Timestamp(2026, 3, 12)].reset_index(drop=True)
    got = daily[daily.date == pd.Timestamp(2026, 3, 12)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert len(got) == 4


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(feature rows, events with their UTC ``day``) of a small generated portal."""
    from ingestion.generate import generate_demo_data

    tmp = tmp_path_factory.mktemp("generated")
    settings = get_settings(data_dir=tmp / "data", artifacts_dir=tmp / "artifacts")
    data = generate_demo_data(n_users=80, days=45, seed=5, start=date(2026, 1, 1))
    features = _build(settings, data.users, data.events)
    events = data.events.assign(
        day=data.events.event_time.dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize()
    )
    return features, events


def test_window_counts_match_a_brute_force_count(generated):
    """Every row of a generated portal against counts taken straight from the events."""
    features, events = generated
    touched = events.dropna(subset=["course_id"])[["user_id", "day", "course_id"]]
    logins = events[events.event_type == "login"][["user_id", "day"]]
    rows = features.sample(400, random_state=1)
    for row in rows.itertuples(index=False):
        for w in (7, 14, 30):
            lo = row.date - pd.Timedelta(days=w - 1)
            in_window = (touched.user_id == row.user_id) & touched.day.between(lo, row.date)
            assert getattr(row, f"distinct_courses_{w}d") == touched[in_window].course_id.nunique()
            in_window = (logins.user_id == row.user_id) & logins.day.between(lo, row.date)
            assert getattr(row, f"logins_{w}d") == in_window.sum()


def test_lifetime_features_match_a_brute_force_count(generated):
    """Lifetime totals, recencies of each kind and distinct courses, straight from the events."""
    features, events = generated
    paid = events[events.event_type == "payment_success"]
    for row in features.sample(400, random_state=2).itertuples(index=False):
        mine = events[(events.user_id == row.user_id) & (events.day <= row.date)]
        assert row.logins_lifetime == (mine.event_type == "login").sum()
        assert row.distinct_courses_lifetime == mine.course_id.dropna().nunique()
        mine_paid = paid[(paid.user_id == row.user_id) & (paid.day <= row.date)]
        assert row.amount_paid_lifetime == pytest.approx(mine_paid.amount.sum())
        if mine_paid.empty:
            assert pd.isna(row.days_since_last_payment)
        else:
            assert row.days_since_last_payment == (row.date - mine_paid.day.max()).days


def test_daily_runs_equal_the_full_build_on_a_generated_portal(make_settings):
    """Ten nightly runs in a row (with sign-ups, churn and courses) equal the full build.

    Lifetime totals included: each night adds its day to the previous night's totals.
    """
    from ingestion.generate import generate_demo_data

    data = generate_demo_data(n_users=150, days=50, seed=9, start=date(2026, 1, 1))
    settings = make_settings()
    full = _build(settings, data.users, data.events)
    last_days = [date(2026, 2, 10) + timedelta(days=i) for i in range(10)]
    for root in (settings.user_daily_path, settings.features_path, settings.user_courses_path):
        for day in last_days:
            shutil.rmtree(partitions.partition_dir(root, day))
    for day in last_days:
        build_user_daily(settings, as_of=day)
        build_rolling_features(settings, as_of=day)
    daily = _read(settings.features_path)
    pd.testing.assert_frame_equal(
        daily.reset_index(drop=True), full.reset_index(drop=True), check_exact=True
    )
    assert (full.date == pd.Timestamp(2026, 2, 19)).sum() > 100


def test_builds_in_parts_equal_the_one_pass_builds(make_settings, monkeypatch):
    """user_daily built in ranges of days and the features in buckets of users (as a large
    portal's are) hold the same rows as one pass; progress counts the parts."""
    from ingestion import prepare, rolling_features
    from ingestion.generate import generate_demo_data

    data = generate_demo_data(n_users=150, days=50, seed=9, start=date(2026, 1, 1))
    settings = make_settings()
    one_pass = _build(settings, data.users, data.events)
    one_pass_daily = _read(settings.user_daily_path)
    monkeypatch.setattr(prepare, "PART_EVENTS", len(data.events) // 4 + 1)
    steps: list[tuple[int, int]] = []
    build_user_daily(settings, now=datetime(2026, 4, 1, tzinfo=UTC),
                     progress=lambda done, total: steps.append((done, total)))  # fmt: skip
    assert steps == [(i, 4) for i in range(1, 5)]
    pd.testing.assert_frame_equal(
        _read(settings.user_daily_path).reset_index(drop=True),
        one_pass_daily.reset_index(drop=True),
        check_exact=True,
    )
    user_days = len(one_pass_daily)
    monkeypatch.setattr(rolling_features, "BUCKET_ROWS", user_days // 5 + 1)
    steps.clear()
    build_rolling_features(settings, progress=lambda done, total: steps.append((done, total)))
    assert steps == [(i, 5) for i in range(1, 6)]
    newest = partitions.partition_dir(settings.features_path, date(2026, 2, 19))
    assert len(list(newest.glob("*.parquet"))) > 1  # the day's rows came from several buckets
    pd.testing.assert_frame_equal(
        _read(settings.features_path).reset_index(drop=True),
        one_pass.reset_index(drop=True),
        check_exact=True,
    )


@pytest.mark.parametrize(
    ("days", "events", "expected"),
    [
        (120, 10, 1),  # one pass holds them
        (120, 100_000_000, 5),
        (3, 100_000_000, 3),  # never more parts than days
    ],
)
def test_day_parts_cover_the_range_once(days, events, expected):
    from ingestion.prepare import day_parts

    first = date(2026, 1, 1)
    last = first + timedelta(days=days - 1)
    parts = day_parts(first, last, events)
    assert len(parts) == expected
    assert parts[0][0] == first and parts[-1][1] == last
    for (_, hi), (lo, _) in pairwise(parts):
        assert lo == hi + timedelta(days=1)


def test_parts_shrink_with_duckdbs_cap():
    """A smaller memory cap (a smaller CHURN_MEMORY_BUDGET) cuts the full builds finer, so each
    pass still fits it; Spark keeps one pass."""
    from ingestion.prepare import day_parts
    from ingestion.rolling_features import user_buckets

    class Engine:
        name = "duckdb"

    first, last = date(2026, 1, 1), date(2026, 4, 30)
    assert len(day_parts(first, last, 100_000_000)) == 5
    assert len(day_parts(first, last, 100_000_000, cap_bytes=1_500_000_000)) == 10
    assert len(user_buckets(Engine(), 80_000_000)) == 10
    assert len(user_buckets(Engine(), 80_000_000, cap_bytes=1_500_000_000)) == 20
    assert user_buckets(Engine(), 8_000_000) == ["true"]
    Engine.name = "spark"
    assert user_buckets(Engine(), 80_000_000) == ["true"]
