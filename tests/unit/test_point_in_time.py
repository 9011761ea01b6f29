"""Point-in-time semantics: events at or after T change no feature row stamped ≤ T."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import numpy as np
import pandas as pd

from core import partitions
from core.atomic import write_parquet
from core.contract import EVENT_TYPES
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features

START = pd.Timestamp("2026-01-01", tz="UTC")
DAYS = 40
T = START + pd.Timedelta(days=25)  # a day boundary: rows stamped ≤ T cover days < 25


def _random_events(rng: np.random.Generator, n: int, lo: pd.Timestamp, hi: pd.Timestamp, users):
    types = rng.choice(EVENT_TYPES, size=n)
    seconds = rng.integers(0, int((hi - lo).total_seconds()), size=n)
    frame = pd.DataFrame(
        {
            "user_id": rng.choice(users, size=n),
            "event_time": lo + pd.to_timedelta(seconds, unit="s"),
            "event_type": types,
            "course_id": np.where(
                np.isin(types, ["video_watch", "quiz_attempt", "course_enroll"]),
                rng.choice(["k8s-101", "tf-201", "aws-101", "gcp-101"], size=n),
                None,
            ),
            "watch_minutes": np.where(types == "video_watch", rng.uniform(1, 60, n), np.nan),
            "quiz_score": np.where(types == "quiz_attempt", rng.uniform(0, 100, n), np.nan),
            "amount": np.where(np.char.startswith(types.astype(str), "payment"), 29.0, np.nan),
        }
    )
    return frame


def _features(settings) -> pd.DataFrame:
    build_user_daily(settings, now=datetime(2026, 6, 1, tzinfo=UTC))
    build_rolling_features(settings)
    glob = partitions.table_glob(settings.features_path)
    return duckdb.sql(
        f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY user_id, date"
    ).df()


def test_events_after_t_change_no_row_stamped_at_or_before_t(make_settings):
    rng = np.random.default_rng(7)
    users = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(60)],
            "signup_time": START + pd.to_timedelta(rng.integers(0, 20 * 86400, 60), unit="s"),
            "plan": rng.choice(["free", "paid"], 60),
            "country": "DE",
            "acquisition_channel": "organic",
        }
    )
    events = _random_events(
        rng, 3000, START + pd.Timedelta(days=20), START + pd.Timedelta(days=DAYS), users.user_id
    )
    events.insert(0, "event_id", [f"a{i}" for i in range(len(events))])
    settings = make_settings()
    write_parquet(users, settings.validated_dir / "users.parquet")
    write_parquet(events, settings.validated_dir / "events.parquet")
    before = _features(settings)

    # Append a burst of activity from exactly T on (the boundary itself included).
    late = _random_events(rng, 2000, T, START + pd.Timedelta(days=DAYS), users.user_id)
    late.loc[0, "event_time"] = T
    late.insert(0, "event_id", [f"b{i}" for i in range(len(late))])
    write_parquet(pd.concat([events, late]), settings.validated_dir / "events.parquet")
    after = _features(settings)

    stamped = before.event_timestamp.dt.tz_convert("UTC")
    settled_before = before[stamped <= T].reset_index(drop=True)
    settled_after = after[after.event_timestamp.dt.tz_convert("UTC") <= T].reset_index(drop=True)
    assert len(settled_before) > 0
    pd.testing.assert_frame_equal(settled_after, settled_before)
    # The control: rows after T did see the new events, so the check above is not vacuous.
    later_before = before[stamped > T].reset_index(drop=True)
    later_after = after[after.event_timestamp.dt.tz_convert("UTC") > T].reset_index(drop=True)
    assert (later_after.logins_30d.to_numpy() >= later_before.logins_30d.to_numpy()).all()
    assert later_after.logins_30d.sum() > later_before.logins_30d.sum()
