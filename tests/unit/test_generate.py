"""The demo generator: contract shape, time semantics, and the causal directions it promises."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churn.settings import get_settings
from ingestion.contract import (
    EVENT_COLUMNS,
    EVENT_TYPES,
    MAX_WATCH_MINUTES,
    QUIZ_SCORE_RANGE,
    USER_COLUMNS,
)
from ingestion.generate import COURSES, GeneratedData, generate_demo_data, write_demo_data

START = date(2024, 3, 1)
DAYS = 60
T0 = pd.Timestamp(START, tz="UTC")
T_END = T0 + pd.Timedelta(days=DAYS)
DTYPES = {
    "string": pd.api.types.is_string_dtype,
    "double": pd.api.types.is_float_dtype,
    "timestamp[us, tz=UTC]": lambda dtype: str(dtype) == "datetime64[us, UTC]",
}


@pytest.fixture(scope="module")
def data() -> GeneratedData:
    return generate_demo_data(n_users=300, days=DAYS, seed=7, start=START)


@pytest.fixture(scope="module")
def drift() -> GeneratedData:
    return generate_demo_data(n_users=300, days=DAYS, seed=7, start=START, scenario="drift")


def _with_lifetimes(data: GeneratedData) -> pd.DataFrame:
    """Events joined with their user's signup and churn time."""
    users = data.users[["user_id", "signup_time"]].merge(data.truth_users, on="user_id")
    return data.events.merge(users, on="user_id", how="left", validate="many_to_one")


def test_same_seed_gives_identical_frames_and_another_seed_does_not() -> None:
    first = generate_demo_data(n_users=80, days=20, seed=3, start=START)
    second = generate_demo_data(n_users=80, days=20, seed=3, start=START)
    other = generate_demo_data(n_users=80, days=20, seed=4, start=START)
    for name in ("users", "events", "truth_users", "truth_daily"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    assert not first.events[["user_id", "event_time"]].equals(
        other.events[["user_id", "event_time"]]
    )


@pytest.mark.parametrize(("frame", "columns"), [("users", USER_COLUMNS), ("events", EVENT_COLUMNS)])
def test_columns_and_types_follow_the_contract(
    data: GeneratedData, frame: str, columns: dict[str, str]
) -> None:
    table = getattr(data, frame)
    assert list(table.columns) == list(columns)
    for name, kind in columns.items():
        assert DTYPES[kind](table[name].dtype), (name, table[name].dtype)


def test_hidden_state_stays_out_of_the_raw_tables(data: GeneratedData) -> None:
    hidden = (set(data.truth_users.columns) | set(data.truth_daily.columns)) - {"user_id"}
    assert hidden.isdisjoint(data.users.columns)
    assert hidden.isdisjoint(data.events.columns)
    assert {"churn_time"} <= set(data.truth_users.columns)
    assert list(data.truth_daily.columns) == ["user_id", "day", "engagement", "hazard"]


def test_events_fall_in_the_range_sorted_with_unique_ids(data: GeneratedData) -> None:
    events = data.events
    assert events["event_time"].min() >= T0
    assert events["event_time"].max() < T_END
    assert events["event_time"].is_monotonic_increasing
    assert events["event_id"].is_unique
    assert set(events["event_type"]) == set(EVENT_TYPES)
    assert set(events["user_id"]) <= set(data.users["user_id"])


def test_no_event_before_signup_or_at_or_after_churn(data: GeneratedData) -> None:
    joined = _with_lifetimes(data)
    assert (joined["event_time"] >= joined["signup_time"]).all()
    churned = joined["churn_time"].notna()
    assert (joined.loc[churned, "event_time"] < joined.loc[churned, "churn_time"]).all()
    assert data.truth_users["churn_time"].dropna().lt(T_END).all()


@pytest.mark.parametrize(
    ("column", "event_types", "low", "high"),
    [
        ("watch_minutes", {"video_watch"}, 0.0, MAX_WATCH_MINUTES),
        ("quiz_score", {"quiz_attempt"}, *QUIZ_SCORE_RANGE),
        ("amount", {"payment_success", "payment_failed"}, 0.01, np.inf),
        ("course_id", {"video_watch", "quiz_attempt", "course_enroll"}, None, None),
    ],
)
def test_values_only_on_their_event_types_and_in_range(
    data: GeneratedData, column: str, event_types: set[str], low: float | None, high: float | None
) -> None:
    events = data.events
    owns = events["event_type"].isin(event_types)
    assert events.loc[owns, column].notna().all()
    assert events.loc[~owns, column].isna().all()
    if low is not None:
        assert events.loc[owns, column].between(low, high).all()
    else:
        assert set(events.loc[owns, column]) <= set(COURSES)


def test_signups_spread_over_the_period_with_full_timestamps(data: GeneratedData) -> None:
    signup = data.users["signup_time"]
    before = signup < T0
    assert 0.2 < before.mean() < 0.5  # an existing user base, not everyone on day 0
    in_range = (signup[~before] - T0) / pd.Timedelta(days=DAYS)
    assert in_range.lt(1).all()
    # Roughly uniform: each third of the range gets a fair share of the new sign-ups.
    thirds = np.bincount((in_range * 3).astype(int), minlength=3) / len(in_range)
    assert (thirds > 0.2).all()
    assert signup.dt.floor("D").ne(signup).all()


def test_truth_daily_has_one_row_per_user_per_day_alive(data: GeneratedData) -> None:
    users = data.users.merge(data.truth_users, on="user_id")
    first = np.maximum((users["signup_time"] - T0).dt.days, 0)
    last = ((users["churn_time"] - T0).dt.days).fillna(DAYS - 1).astype(int)
    expected = pd.Series((last - first + 1).to_numpy(), index=users["user_id"])
    counts = data.truth_daily.groupby("user_id").size()
    pd.testing.assert_series_equal(
        counts.reindex(expected.index, fill_value=0), expected, check_names=False
    )
    assert not data.truth_daily.duplicated(["user_id", "day"]).any()
    assert data.truth_daily["engagement"].between(0, 1).all()
    assert data.truth_daily["hazard"].between(0, 1).all()


def test_churners_were_less_engaged_and_paying_users_churn_less(data: GeneratedData) -> None:
    truth = data.truth_users.merge(data.users, on="user_id")
    churned = truth.set_index("user_id")["churn_time"].notna()
    engagement = data.truth_daily.groupby("user_id")["engagement"].mean()
    assert engagement[churned[churned].index].mean() < engagement[churned[~churned].index].mean()
    paid = truth["plan"].eq("paid").to_numpy()
    assert churned[paid].mean() < churned[~paid].mean()
    daily = data.truth_daily
    assert np.corrcoef(daily["engagement"], daily["hazard"])[0, 1] < 0


def test_activity_and_quiz_scores_follow_engagement(data: GeneratedData) -> None:
    daily = data.truth_daily
    engagement = daily.groupby("user_id")["engagement"].mean()
    per_day = data.events.groupby("user_id").size().reindex(engagement.index, fill_value=0)
    per_day /= daily.groupby("user_id").size()
    assert np.corrcoef(engagement, per_day)[0, 1] > 0.5
    quizzes = data.events[data.events["event_type"] == "quiz_attempt"]
    score = quizzes.groupby("user_id")["quiz_score"].mean()
    assert np.corrcoef(engagement[score.index], score)[0, 1] > 0.3


def test_drift_changes_the_world_only_from_drift_day(
    data: GeneratedData, drift: GeneratedData
) -> None:
    cut = T0 + pd.Timedelta(days=DAYS * 2 // 3)
    base_before = data.events[data.events["event_time"] < cut]
    drift_before = drift.events[drift.events["event_time"] < cut]
    pd.testing.assert_frame_equal(base_before, drift_before)

    def watch_after(d: GeneratedData) -> float:
        after = d.events[
            (d.events["event_time"] >= cut) & (d.events["event_type"] == "video_watch")
        ]
        return float(after["watch_minutes"].mean())

    assert watch_after(drift) < 0.85 * watch_after(data)
    cohort = drift.truth_users["drift_cohort"].to_numpy()
    assert (drift.users["signup_time"][cohort] >= cut).all()
    social = drift.users["acquisition_channel"].eq("social").to_numpy()
    assert social[cohort].mean() > social[~cohort].mean()


def test_progress_is_reported_once_per_simulated_day() -> None:
    calls: list[tuple[int, int]] = []
    generate_demo_data(n_users=20, days=5, start=START, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(day, 5) for day in range(1, 6)]


def test_default_range_ends_with_yesterday() -> None:
    # The clock read on both sides, so a run across midnight cannot fail it.
    before = pd.Timestamp(datetime.now(UTC).date(), tz="UTC")
    events = generate_demo_data(n_users=50, days=5).events["event_time"]
    after = pd.Timestamp(datetime.now(UTC).date(), tz="UTC")
    assert events.min() >= before - timedelta(days=5)
    assert events.max() < after


@pytest.mark.parametrize("later", [date(2024, 4, 17), date(2027, 2, 28), date(2023, 12, 31)])
def test_one_seed_is_one_world_whatever_the_start(later: date) -> None:
    """The demo trains on the same data on every date: a start only shifts the timestamps
    (month lengths and billing days used to change the draws, and so the gate's verdict)."""
    first = generate_demo_data(n_users=400, days=90, seed=11, start=START)
    moved = generate_demo_data(n_users=400, days=90, seed=11, start=later)
    shift = pd.Timedelta(days=(later - START).days)
    columns = {
        "users": ["signup_time"],
        "events": ["event_time"],
        "truth_users": ["churn_time"],
        "truth_daily": ["day"],
    }
    for name, timed in columns.items():
        frame, other = getattr(first, name).copy(), getattr(moved, name).copy()
        assert len(frame) == len(other) > 0, name
        for column in timed:
            if name == "truth_daily":  # Arrow dates: compare as day numbers
                frame[column] = pd.to_datetime(frame[column].astype(str)) + shift
                other[column] = pd.to_datetime(other[column].astype(str))
            else:
                frame[column] = (frame[column] + shift).astype(other[column].dtype)
        pd.testing.assert_frame_equal(frame, other, obj=name)
    assert first.events["event_type"].eq("payment_success").sum() > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_users": 0},
        {"days": 0},
        {"scenario": "chaos"},
        {"scenario": "drift", "drift_day": 60},
        {"scenario": "drift", "drift_day": -1},
    ],
)
def test_bad_arguments_fail_fast(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        generate_demo_data(**({"days": 60, "start": START} | kwargs))  # type: ignore[arg-type]


def test_write_demo_data_round_trips_with_contract_types(
    data: GeneratedData, tmp_path: Path
) -> None:
    settings = get_settings(data_dir=tmp_path / "data", artifacts_dir=tmp_path / "art")
    paths = write_demo_data(data, settings)
    assert paths == {
        "users": settings.raw_dir / "users.parquet",
        "events": settings.raw_dir / "events.parquet",
        "truth_users": settings.ground_truth_dir / "users.parquet",
        "truth_daily": settings.ground_truth_dir / "daily.parquet",
    }
    for name, columns in (("users", USER_COLUMNS), ("events", EVENT_COLUMNS)):
        schema = pq.read_schema(paths[name])
        assert schema.names == list(columns)
        assert [str(schema.field(c).type) for c in columns] == list(columns.values())
    for name, path in paths.items():
        frame = getattr(data, name)
        back = pd.read_parquet(path)
        pd.testing.assert_frame_equal(back.astype(frame.dtypes.to_dict()), frame)
    assert not list(tmp_path.rglob("*.tmp"))
