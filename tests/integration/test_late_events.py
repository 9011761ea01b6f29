"""Late events: events for a day whose tables were built reach them in the next night.

A world is built through its last day; then the landing folder receives events of an
earlier day (three days back: rebuilt day by day; sixteen: the whole table) and of tonight's
day. One night's stages (ingest → validate → prepare → features, as ``churn nightly`` runs
them) must leave ``user_daily``, the (user, course) pairs and the features exactly as a
full rebuild of the same raw data does. The world's
dates are fixed, and the run's clock is the night's: nothing depends on today.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pyarrow.dataset as ds
import pytest

from churn.stages import STAGES, StageInputs
from core.settings import Settings
from ingestion import raw_store
from ingestion.generate import generate_demo_data, write_demo_data
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features
from ingestion.validate import run_validation

pytestmark = pytest.mark.integration

START = date(2026, 3, 1)
DAYS = 50
LAST = START + timedelta(days=DAYS - 1)  # the last day the world has tables for
NIGHT = LAST + timedelta(days=1)  # tonight's day: its events arrive with the late ones


def table(root) -> pd.DataFrame:
    frame = ds.dataset(root, format="parquet", partitioning="hive").to_table().to_pandas()
    keys = [c for c in ("user_id", "date", "course", "event_timestamp") if c in frame]
    return frame.sort_values(keys).reset_index(drop=True)


def night_inputs(settings: Settings) -> StageInputs:
    return StageInputs.night(settings, NIGHT)


def late_and_new_events(data, late: date) -> pd.DataFrame:
    """Copies of some users' events, moved to ``late`` and to ``NIGHT``, under new ids."""
    events = data.events
    signed_up = data.users.loc[data.users["signup_time"] < pd.Timestamp(late, tz="UTC"), "user_id"]
    events = events[events["user_id"].isin(signed_up)]
    sample = events[events["event_type"].isin(["login", "video_watch", "quiz_attempt"])]
    sample = sample.groupby("user_id").head(2).head(300).copy()
    moved = []
    for day, prefix in ((late, "late-"), (NIGHT, "night-")):
        copy = sample.copy()
        copy["event_time"] = pd.Timestamp(day, tz="UTC") + pd.to_timedelta(
            copy["event_time"].dt.hour * 3600 + copy["event_time"].dt.minute * 60, unit="s"
        )
        copy["event_id"] = prefix + copy["event_id"].astype(str)
        moved.append(copy)
    return pd.concat(moved, ignore_index=True)


# Three days before the night's day: rebuilt day by day; sixteen: past
# REBUILD_ALL_AFTER_DAYS, the features are rebuilt whole.
@pytest.mark.parametrize("days_back", [3, 16])
def test_one_night_after_late_events_equals_a_full_rebuild(make_settings, tmp_path, days_back):
    late_day = NIGHT - timedelta(days=days_back)
    landing = tmp_path / "landing"
    landing.mkdir()
    settings = make_settings(source=f"dir://{landing}", max_event_age_hours=0)
    data = generate_demo_data(n_users=150, days=DAYS, seed=3, start=START)
    write_demo_data(data, settings)
    built_at = datetime.combine(LAST + timedelta(days=1), datetime.min.time(), UTC)
    assert run_validation(settings, now=built_at).passed
    build_user_daily(settings, now=built_at)
    build_rolling_features(settings)
    assert raw_store.pending_days(settings) == []
    late = late_and_new_events(data, late_day)
    late.to_csv(landing / "events-late.csv", index=False)

    inputs = night_inputs(settings)
    landed = STAGES["ingest"].run(inputs)
    assert landed.days == {late_day, NIGHT} and landed.events == len(late)
    assert raw_store.pending_days(settings) == [late_day, NIGHT]
    STAGES["validate"].run(inputs)
    STAGES["prepare"].run(inputs)
    STAGES["features"].run(inputs)
    assert raw_store.pending_days(settings) == []

    rebuilt = make_settings(data_dir=tmp_path / "rebuilt", max_event_age_hours=0)
    shutil.copytree(settings.raw_dir, rebuilt.raw_dir)
    night_end = datetime.combine(NIGHT + timedelta(days=1), datetime.min.time(), UTC)
    assert run_validation(rebuilt, now=night_end).passed
    build_user_daily(rebuilt, now=night_end)
    build_rolling_features(rebuilt)
    for name in ("user_daily_path", "user_courses_path", "features_path"):
        nightly, full = table(getattr(settings, name)), table(getattr(rebuilt, name))
        assert len(full) > 0
        pd.testing.assert_frame_equal(nightly, full, check_exact=True, obj=name)
    days = table(settings.user_daily_path)
    late_rows = days[days["date"].astype(str) == late_day.isoformat()]
    assert late_rows["logins"].sum() > 0
