"""The demo generator: contract shape, time semantics, and the causal directions it promises."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from core import partitions
from core.contract import (
    ACTIVE_EVENT_TYPES,
    EVENT_COLUMNS,
    EVENT_TYPES,
    MAX_WATCH_MINUTES,
    QUIZ_SCORE_RANGE,
    USER_COLUMNS,
)
from core.settings import Settings, get_settings
from ingestion import raw_store
from ingestion.generate import (
    CONCEPT_HAZARD_FACTOR,
    COURSE_PRICES,
    COURSES,
    DemoWorld,
    GeneratedData,
    Outreach,
    generate_demo_data,
    user_id_width,
    write_demo_data,
    write_demo_world,
)

START = date(2024, 3, 1)
DAYS = 60
T0 = pd.Timestamp(START, tz="UTC")
T_END = T0 + pd.Timedelta(days=DAYS)
SHOP_EVENT_TYPES = {"course_enroll", "payment_success", "payment_failed"}
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


@pytest.fixture(scope="module")
def shop() -> GeneratedData:
    return generate_demo_data(n_users=300, days=DAYS, seed=7, start=START, scenario="purchases")


@pytest.fixture(scope="module")
def big_shop() -> GeneratedData:
    """The shop with room for a few as-of days: the longest window before, the horizon after."""
    return generate_demo_data(n_users=1500, days=150, seed=7, start=START, scenario="purchases")


@pytest.fixture(scope="module", params=["data", "shop"])
def world(request: pytest.FixtureRequest) -> GeneratedData:
    """Each world, for what the contract promises whatever the scenario."""
    return request.getfixturevalue(request.param)


def _population(data: GeneratedData, asof_days: range) -> pd.DataFrame:
    """The scored population on the product's default settings, from the events alone.

    One row per (user, T = START + t days) active in the lookback before T, with the label
    (no active day in [T, T + horizon)) and the user's active days in the 30 days before T
    and since the first simulated day.
    """
    lookback = Settings.model_fields["active_lookback_days"].default
    horizon = Settings.model_fields["horizon_days"].default
    active = data.events[data.events["event_type"].isin(ACTIVE_EVENT_TYPES)]
    days = pd.DataFrame(
        {"user_id": active["user_id"], "day": (active["event_time"] - T0).dt.days}
    ).drop_duplicates()

    def active_days(first: int, last: int) -> pd.Series:
        """Active days per user in days [first, last) of the range (users with none left out)."""
        return days[days["day"].between(first, last - 1)].groupby("user_id").size()

    rows = []
    for t in asof_days:
        recent = active_days(t - lookback, t)
        rows.append(
            pd.DataFrame(
                {
                    "t": t,
                    "churned": active_days(t, t + horizon).reindex(recent.index).isna(),
                    "last_30d": active_days(t - 30, t).reindex(recent.index),
                    "lifetime": active_days(0, t).reindex(recent.index),
                }
            )
        )
    return pd.concat(rows)


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
    world: GeneratedData, frame: str, columns: dict[str, str]
) -> None:
    table = getattr(world, frame)
    assert list(table.columns) == list(columns)
    for name, kind in columns.items():
        assert DTYPES[kind](table[name].dtype), (name, table[name].dtype)


def test_hidden_state_stays_out_of_the_raw_tables(world: GeneratedData) -> None:
    hidden = (set(world.truth_users.columns) | set(world.truth_daily.columns)) - {"user_id"}
    assert hidden.isdisjoint(world.users.columns)
    assert hidden.isdisjoint(world.events.columns)
    assert {"churn_time"} <= set(world.truth_users.columns)
    assert list(world.truth_daily.columns) == ["user_id", "day", "engagement", "hazard"]


def test_events_fall_in_the_range_sorted_with_unique_ids(world: GeneratedData) -> None:
    events = world.events
    assert events["event_time"].min() >= T0
    assert events["event_time"].max() < T_END
    assert events["event_time"].is_monotonic_increasing
    assert events["event_id"].is_unique
    assert set(events["user_id"]) <= set(world.users["user_id"])


@pytest.mark.parametrize(
    ("world_name", "event_types"), [("data", set(EVENT_TYPES)), ("shop", SHOP_EVENT_TYPES)]
)
def test_each_world_emits_its_event_types(
    request: pytest.FixtureRequest, world_name: str, event_types: set[str]
) -> None:
    assert set(request.getfixturevalue(world_name).events["event_type"]) == event_types


def test_no_event_before_signup_or_at_or_after_churn(world: GeneratedData) -> None:
    joined = _with_lifetimes(world)
    assert (joined["event_time"] >= joined["signup_time"]).all()
    churned = joined["churn_time"].notna()
    assert (joined.loc[churned, "event_time"] < joined.loc[churned, "churn_time"]).all()
    assert world.truth_users["churn_time"].dropna().lt(T_END).all()


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
    world: GeneratedData, column: str, event_types: set[str], low: float | None, high: float | None
) -> None:
    events = world.events
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


def test_truth_daily_has_one_row_per_user_per_day_alive(world: GeneratedData) -> None:
    users = world.users.merge(world.truth_users, on="user_id")
    first = np.maximum((users["signup_time"] - T0).dt.days, 0)
    last = ((users["churn_time"] - T0).dt.days).fillna(DAYS - 1).astype(int)
    expected = pd.Series((last - first + 1).to_numpy(), index=users["user_id"])
    counts = world.truth_daily.groupby("user_id").size()
    pd.testing.assert_series_equal(
        counts.reindex(expected.index, fill_value=0), expected, check_names=False
    )
    assert not world.truth_daily.duplicated(["user_id", "day"]).any()
    assert world.truth_daily["engagement"].between(0, 1).all()
    assert world.truth_daily["hazard"].between(0, 1).all()


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


@pytest.fixture(scope="module")
def concept() -> GeneratedData:
    """The concept world of ``data``'s seed: its default concept day is two-thirds in (40)."""
    return generate_demo_data(n_users=300, days=DAYS, seed=7, start=START, scenario="concept")


def test_concept_changes_only_the_churn_hazard_from_its_day(
    data: GeneratedData, concept: GeneratedData
) -> None:
    """Until the concept day the world is the baseline's; on it the same users, with the same
    hidden engagement, carry ``CONCEPT_HAZARD_FACTOR`` times the hazard (capped at 0.5)."""
    day = START + timedelta(days=DAYS * 2 // 3)
    cut = T0 + pd.Timedelta(days=DAYS * 2 // 3)
    pd.testing.assert_frame_equal(data.users, concept.users)
    pd.testing.assert_frame_equal(
        data.events[data.events["event_time"] < cut],
        concept.events[concept.events["event_time"] < cut],
    )

    def truth(d: GeneratedData, on: bool) -> pd.DataFrame:
        days = d.truth_daily["day"].astype(object)
        return d.truth_daily[(days == day) if on else (days < day)].reset_index(drop=True)

    pd.testing.assert_frame_equal(truth(data, on=False), truth(concept, on=False))
    before, after = truth(data, on=True), truth(concept, on=True)
    assert before["user_id"].tolist() == after["user_id"].tolist()
    assert before["engagement"].tolist() == after["engagement"].tolist()
    assert CONCEPT_HAZARD_FACTOR > 1
    want = np.minimum(before["hazard"].to_numpy() * CONCEPT_HAZARD_FACTOR, 0.5)
    np.testing.assert_allclose(after["hazard"].to_numpy(), want, rtol=1e-12)
    assert not concept.truth_users["drift_cohort"].any()  # sign-ups are the baseline's


def test_the_shop_on_default_settings_loses_about_half_its_recent_buyers(
    big_shop: GeneratedData,
) -> None:
    """High churn on the product's defaults: of the customers who bought in the 14 days
    before T, 40-60 % buy nothing in [T, T+30). Only purchases happen in the shop."""
    population = _population(big_shop, range(45, 121, 15))
    assert population["t"].value_counts().min() > 150
    assert 0.40 <= population["churned"].mean() <= 0.60
    assert set(big_shop.events["event_type"]) == SHOP_EVENT_TYPES


def test_what_a_customer_bought_since_day_one_tells_beyond_the_last_month(
    big_shop: GeneratedData,
) -> None:
    """The stable propensity shows in lifetime purchases: among recent buyers with one
    purchase in the last 30 days, first-timers leave more often than regulars."""
    population = _population(big_shop, range(45, 121, 15))
    once = population[population["last_30d"] == 1]
    first_timers, regulars = once[once["lifetime"] == 1], once[once["lifetime"] >= 3]
    assert min(len(first_timers), len(regulars)) > 100
    assert first_timers["churned"].mean() > regulars["churned"].mean() + 0.1


def test_the_hidden_propensity_drives_buying_and_staying(big_shop: GeneratedData) -> None:
    daily, truth = big_shop.truth_daily, big_shop.truth_users.set_index("user_id")
    alive = daily.groupby("user_id").size()
    long = alive[alive >= 60].index  # enough days to see a buying rate
    enrolments = big_shop.events[big_shop.events["event_type"] == "course_enroll"]
    per_day = enrolments.groupby("user_id").size().reindex(long, fill_value=0) / alive[long]
    engagement = daily.groupby("user_id")["engagement"].mean()[long]
    assert np.corrcoef(engagement, per_day)[0, 1] > 0.5
    churned = truth["churn_time"].notna()
    level = truth["base_engagement"]
    assert level[churned].mean() < level[~churned].mean()
    assert np.corrcoef(daily["engagement"], daily["hazard"])[0, 1] < 0


def test_a_purchase_is_a_payment_then_the_enrolment_at_the_course_list_price(
    big_shop: GeneratedData,
) -> None:
    events = big_shop.events.assign(day=(big_shop.events["event_time"] - T0).dt.days)
    key = ["user_id", "day"]
    enrolled = events[events["event_type"] == "course_enroll"]
    paid = events[events["event_type"] == "payment_success"]
    assert not enrolled.duplicated(key).any()  # at most one purchase a day
    purchase = enrolled.merge(paid, on=key, suffixes=("", "_paid"), validate="one_to_one")
    assert len(purchase) == len(enrolled) == len(paid)
    assert (purchase["event_time_paid"] < purchase["event_time"]).all()
    price = dict(zip(COURSES, COURSE_PRICES, strict=True))
    assert purchase["amount_paid"].eq(purchase["course_id"].map(price).astype(float)).all()
    declined = events[events["event_type"] == "payment_failed"]
    retried = declined.merge(paid, on=key, suffixes=("", "_paid"))
    assert (retried["event_time"] < retried["event_time_paid"]).all()
    assert 0 < len(retried) < len(declined)  # some retry at once, the others buy nothing
    # No course bought twice, until a customer owns them all.
    catalogue = enrolled[enrolled.groupby("user_id").cumcount() < len(COURSES)]
    assert not catalogue.duplicated(["user_id", "course_id"]).any()


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


@pytest.mark.parametrize("scenario", ["baseline", "purchases"])
@pytest.mark.parametrize("later", [date(2024, 4, 17), date(2027, 2, 28), date(2023, 12, 31)])
def test_one_seed_is_one_world_whatever_the_start(later: date, scenario: str) -> None:
    """The demo trains on the same data on every date: a start only shifts the timestamps
    (month lengths and billing days used to change the draws, and so the gate's verdict)."""
    first = generate_demo_data(n_users=400, days=90, seed=11, start=START, scenario=scenario)
    moved = generate_demo_data(n_users=400, days=90, seed=11, start=later, scenario=scenario)
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
        {"scenario": "concept", "drift_day": 60},
        {"scenario": "concept", "drift_day": -1},
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
        "events": settings.raw_dir / "events",
        "truth_users": settings.ground_truth_dir / "users.parquet",
        "truth_daily": settings.ground_truth_dir / "daily.parquet",
    }
    event_file = next(paths["events"].glob("date=*/events.parquet"))
    for path, columns in ((paths["users"], USER_COLUMNS), (event_file, EVENT_COLUMNS)):
        schema = pq.read_schema(path)
        assert schema.names == list(columns)
        assert [str(schema.field(c).type) for c in columns] == list(columns.values())
    for name, path in paths.items():
        frame = getattr(data, name)
        if name == "events":  # stored by day, each day by time: compare in one order
            back = raw_store.read_events(settings).to_pandas().sort_values("event_id")
            frame = frame.sort_values("event_id")
        else:
            back = pd.read_parquet(path)
        pd.testing.assert_frame_equal(
            back.astype(frame.dtypes.to_dict()).reset_index(drop=True),
            frame.reset_index(drop=True),
        )
    assert not list(tmp_path.rglob("*.tmp"))


# Each world's fingerprint (``_fingerprint``), computed with the generator of commit
# 0e4dcf0, before users were simulated in blocks: a world of one block is that world. The
# fingerprint is exact where the world is discrete (sha256 of every frame as CSV, float
# columns left out: ids, times, event kinds, who churned) and a sum per float column, which
# must agree to 1e-6 relative. Floats differ in their last bits between CPUs (numpy's SIMD
# exp and log on AVX-512 against AVX2), and a minute rounded to 0.1 may then round the other
# way; any change to a draw moves a sum far more. Recomputed with 0e4dcf0's generator on
# 2026-12-06 (numpy 2.4.6, pandas 2.3.3, pyarrow 26.0.1; `git worktree add /tmp/before
# 0e4dcf0`, the fixtures' calls there), where both generators gave these.
BEFORE_BLOCKS = {
    "data": (
        "e6a00de2a1a68b7064f923c3b55a7b9eb484c084b7b89af019928268ae0cad72",
        {"events.watch_minutes": 155380.5, "events.quiz_score": 162953.4, "events.amount": 5547.0,
         "truth_users.base_engagement": 119.19394374420841,
         "truth_users.drift_per_day": 2.7950277090959372,
         "truth_daily.engagement": 5084.9875134444355, "truth_daily.hazard": 47.60151762451106},
    ),
    "drift": (
        "b6d726b23252eecc0fb66d2c23b9e23e1272a101dbaa998b346cee3c01a9e65d",
        {"events.watch_minutes": 123773.0, "events.quiz_score": 156496.1, "events.amount": 5255.0,
         "truth_users.base_engagement": 111.8258270442536,
         "truth_users.drift_per_day": 2.7950277090959372,
         "truth_daily.engagement": 4989.092804941443, "truth_daily.hazard": 54.51496526838526},
    ),
    "shop": (
        "85509a65d2ab4fac349435c296ed51299814db4569e71cd977e1eb5ba37104d4",
        {"events.watch_minutes": 0.0, "events.quiz_score": 0.0, "events.amount": 13890.0,
         "truth_users.base_engagement": 123.94546408943954,
         "truth_users.drift_per_day": 2.7950277090959372,
         "truth_daily.engagement": 5935.592085003098, "truth_daily.hazard": 50.34367872713964},
    ),
    "outreach": (
        "e7eb4e9646797a5a3130e9738cf42ff0e8c5dfa2e5ee6ab25a2c15393d20f859",
        {"events.watch_minutes": 154148.7, "events.quiz_score": 160614.1, "events.amount": 5694.0,
         "truth_users.base_engagement": 119.19394374420841,
         "truth_users.drift_per_day": 2.7950277090959372,
         "truth_daily.engagement": 5061.950784846202, "truth_daily.hazard": 50.626581103176946},
    ),
}  # fmt: skip
TWO_BLOCKS = 200  # users per block: the 300-user world is two blocks, of 200 and 100


def _fingerprint(data: GeneratedData) -> tuple[str, dict[str, float]]:
    """sha256 of the frames without their float columns, and the sum of each float column."""
    digest, sums = hashlib.sha256(), {}
    for name in ("users", "events", "truth_users", "truth_daily", "truth_saves"):
        frame = getattr(data, name)
        floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
        digest.update(name.encode())
        digest.update(frame.drop(columns=floats).to_csv(index=False).encode())
        sums |= {f"{name}.{column}": float(frame[column].sum()) for column in floats}
    return digest.hexdigest(), sums


def _outreach_to(first: int, last: int) -> Outreach:
    """Every third user of ``first .. last-1`` contacted on the 20th day, hazard cut by 80 %."""
    contacts = pd.DataFrame(
        {"user_id": [f"u{i:06d}" for i in range(first, last, 3)], "date": START + timedelta(19)}
    )
    return Outreach(contacts, 0.8, 30)


@pytest.mark.parametrize("name", ["data", "drift", "shop", "outreach"])
def test_a_world_of_one_block_is_the_world_of_before_blocks(
    request: pytest.FixtureRequest, name: str
) -> None:
    if name == "outreach":
        world = generate_demo_data(n_users=300, days=DAYS, seed=7, start=START,
                                   outreach=_outreach_to(0, 300))  # fmt: skip
        assert len(world.truth_saves) > 0
    else:
        world = request.getfixturevalue(name)
    exact, sums = _fingerprint(world)
    expected_exact, expected_sums = BEFORE_BLOCKS[name]
    assert exact == expected_exact
    assert sums == pytest.approx(expected_sums, rel=1e-6, abs=1e-9)


@pytest.fixture(scope="module")
def two_blocks() -> GeneratedData:
    return generate_demo_data(n_users=300, days=DAYS, seed=7, start=START, block_users=TWO_BLOCKS)


def test_the_first_block_is_the_one_block_world_of_its_seed(two_blocks: GeneratedData) -> None:
    one = generate_demo_data(n_users=TWO_BLOCKS, days=DAYS, seed=7, start=START)
    ids = two_blocks.users["user_id"]
    assert ids.is_unique and ids.is_monotonic_increasing
    assert list(ids) == [f"u{i:06d}" for i in range(300)]
    first = ids[:TWO_BLOCKS]
    for name in ("users", "truth_users", "truth_daily", "events"):
        frame = getattr(two_blocks, name)
        mine = frame[frame["user_id"].isin(first)].reset_index(drop=True)
        # Event ids number the whole world's events by time, so they differ; nothing else.
        drop = ["event_id"] if name == "events" else []
        pd.testing.assert_frame_equal(
            mine.drop(columns=drop), getattr(one, name).drop(columns=drop)
        )
    later = two_blocks.users["signup_time"][TWO_BLOCKS:].reset_index(drop=True)
    assert not later.equals(one.users["signup_time"][: len(later)])  # a stream of its own
    assert two_blocks.events["event_id"].is_unique
    assert two_blocks.events["event_time"].is_monotonic_increasing
    assert set(two_blocks.events["user_id"]) - set(first)  # the second block is active too


def test_outreach_reaches_the_users_of_the_block_it_names(two_blocks: GeneratedData) -> None:
    """Contacts of the second block's users change that block only, for contacted users."""
    helped = generate_demo_data(n_users=300, days=DAYS, seed=7, start=START,
                                block_users=TWO_BLOCKS, outreach=_outreach_to(TWO_BLOCKS, 300))  # fmt: skip
    contacted = set(_outreach_to(TWO_BLOCKS, 300).contacts["user_id"])
    assert len(helped.truth_saves) > 0 and set(helped.truth_saves["user_id"]) <= contacted
    first = two_blocks.users["user_id"][:TWO_BLOCKS]
    columns = ["user_id", "event_time", "event_type"]
    in_first = [d.events[d.events["user_id"].isin(first)][columns].reset_index(drop=True)
                for d in (two_blocks, helped)]  # fmt: skip
    pd.testing.assert_frame_equal(*in_first)
    churned = helped.truth_users.set_index("user_id")["churn_time"].notna()
    untreated = two_blocks.truth_users.set_index("user_id")["churn_time"].notna()
    assert churned[sorted(contacted)].sum() < untreated[sorted(contacted)].sum()


@pytest.mark.parametrize("block_users", [TWO_BLOCKS, 10_000])
def test_a_streamed_world_writes_the_files_of_the_world_in_memory(
    block_users: int, tmp_path: Path
) -> None:
    """Each day partition holds all users' events of that day, and every file is the one
    ``write_demo_data`` writes for the same world held in memory."""
    kwargs = {"n_users": 300, "days": DAYS, "seed": 7, "start": START, "block_users": block_users}
    streamed = get_settings(data_dir=tmp_path / "streamed", artifacts_dir=tmp_path / "art")
    in_memory = get_settings(data_dir=tmp_path / "memory", artifacts_dir=tmp_path / "art")
    calls: list[int] = []
    written = write_demo_world(DemoWorld(**kwargs), streamed, lambda d, _: calls.append(d))
    data = generate_demo_data(**kwargs)
    paths = write_demo_data(data, in_memory)
    assert calls == list(range(1, DAYS + 1))
    assert (written.users, written.events) == (300, len(data.events))
    assert written.paths.keys() == paths.keys()
    for day in partitions.partition_days(raw_store.events_root(streamed)):
        events = pq.read_table(partitions.partition_dir(
            raw_store.events_root(streamed), day) / raw_store.EVENTS_FILE)  # fmt: skip
        assert set(pc.cast(events["event_time"], "date32").to_pylist()) == {day}
    files = sorted(p.relative_to(in_memory.data_dir) for p in in_memory.data_dir.rglob("*.parquet"))
    assert files == sorted(
        p.relative_to(streamed.data_dir) for p in streamed.data_dir.rglob("*.parquet")
    )
    for name in files:
        mine, theirs = (
            pq.read_table(streamed.data_dir / name),
            pq.read_table(in_memory.data_dir / name),
        )
        assert mine.equals(theirs, check_metadata=True), name
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failed_generate_leaves_the_previous_world(data: GeneratedData, tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data", artifacts_dir=tmp_path / "art")
    write_demo_data(data, settings)
    before = {p: p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file()}

    def fail_on_day_3(day: int, _: int) -> None:
        if day == 3:
            raise RuntimeError("disk full")

    world = DemoWorld(n_users=100, days=DAYS, seed=8, start=START, block_users=60)
    with pytest.raises(RuntimeError, match="disk full"):
        write_demo_world(world, settings, fail_on_day_3)
    after = {p: p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file()}
    assert after.keys() - before.keys() <= {settings.raw_dir / ".ingest.lock"}
    assert all(after[p] == content for p, content in before.items())


@pytest.mark.parametrize(("n_users", "width"), [(1, 6), (1_000_000, 6), (1_000_001, 7)])
def test_user_ids_widen_past_a_million_users_so_they_still_sort(n_users: int, width: int) -> None:
    assert user_id_width(n_users) == width


def test_a_world_is_simulated_once_and_blocks_have_users() -> None:
    world = DemoWorld(n_users=20, days=3, seed=1, start=START)
    assert len(list(world.simulate())) == 3
    with pytest.raises(RuntimeError, match="simulated already"):
        next(world.simulate())
    with pytest.raises(ValueError, match="block_users"):
        DemoWorld(n_users=20, days=3, start=START, block_users=0)
