"""The holdout experiment's bookkeeping: arms, the contacts training and outcomes leave out,
and the generator's outreach simulation."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from core import partitions
from core.engines import open_engine
from core.tables import USER_DAILY, register_table
from ingestion.generate import Outreach, generate_demo_data
from monitor.outcomes import uncontacted
from served.arms import CONTACT, EPOCH, HOLDOUT, assign_arms, assignment_period, write_assignments
from training.labels import AsOfRange, labels_sql
from training.outreach import contacts

IDS = [f"u{i:06d}" for i in range(20_000)]


def test_arms_are_a_share_of_the_users_and_stay_put_through_a_period():
    first = date(2026, 1, 1)
    arms = assign_arms(IDS, first, 0.1, 30)
    assert abs((arms == HOLDOUT).mean() - 0.1) < 0.01
    # Every night of the period draws the same split; the next period draws again.
    same = EPOCH + timedelta(days=(assignment_period(first, 30) + 1) * 30 - 1)  # its last day
    assert assignment_period(same, 30) == assignment_period(first, 30)
    assert (assign_arms(IDS, same, 0.1, 30) == arms).all()
    after = same + timedelta(days=1)
    moved = assign_arms(IDS, after, 0.1, 30) != arms
    assert 0.1 < moved.mean() < 0.3  # about 2 × 0.1 × 0.9 change arms
    assert (assign_arms(IDS, first, 0.0, 30) == CONTACT).all()


def test_realized_outcomes_leave_out_only_the_contact_arm():
    scored = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "churn_risk": 0.5})
    assigned = pd.DataFrame({"user_id": ["a", "b"], "arm": [CONTACT, HOLDOUT]})
    kept, left_out = uncontacted(scored, assigned)
    assert kept["user_id"].tolist() == ["b", "c", "d"] and left_out == 1
    before_the_experiment, none = uncontacted(scored, None)
    assert before_the_experiment.equals(scored) and none == 0


def test_training_labels_leave_out_windows_outreach_touched(make_settings):
    """Horizon 5: a contact on day D touches the labels at T in (D - 5, D + 5); the other
    users' labels, and the contacted user's outside that span, stay."""
    settings = make_settings(horizon_days=5, active_lookback_days=30)
    start = date(2026, 1, 1)
    days = [start + timedelta(days=i) for i in range(40)]
    for day in days:
        path = partitions.partition_dir(settings.user_daily_path, day) / "part.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"user_id": ["a", "b"], "active": [1, 1]}).to_parquet(path)
    night = start + timedelta(days=20)
    listed = pd.DataFrame({"user_id": ["a", "b"], "arm": [CONTACT, HOLDOUT], "risk_band": "high",
                           "churn_risk": 0.5, "monthly_revenue": 0.0, "model_version": "v"})  # fmt: skip
    write_assignments(settings, night, listed)
    engine = open_engine(settings)
    register_table(engine, USER_DAILY, settings.user_daily_path, days)
    asof = AsOfRange(start + timedelta(days=5), start + timedelta(days=35), 1)
    engine.register_frame("contacted", contacts(settings))
    every = engine.frame(labels_sql(asof, 30, 5))
    untouched = engine.frame(labels_sql(asof, 30, 5, contacted="contacted"))
    gone = every.merge(untouched, how="left", indicator=True).query("_merge == 'left_only'")
    assert set(gone["user_id"]) == {"a"}
    stamps = pd.to_datetime(gone["event_timestamp"]).dt.date
    assert sorted(stamps) == [night + timedelta(days=k) for k in range(-4, 5)]


def test_outreach_changes_nothing_before_it_keeps_someone_and_keeps_only_the_contacted():
    start, contact_day = date(2026, 1, 1), date(2026, 2, 10)
    base = generate_demo_data(600, 90, seed=3, start=start)
    who = pd.DataFrame({"user_id": IDS[:600:2], "date": contact_day})
    none = generate_demo_data(600, 90, seed=3, start=start, outreach=Outreach(who, 0.0, 30))
    assert none.events.equals(base.events) and none.truth_saves.empty
    helped = generate_demo_data(600, 90, seed=3, start=start, outreach=Outreach(who, 0.8, 30))
    saves = helped.truth_saves
    assert not saves.empty
    assert set(saves["user_id"]) <= set(who["user_id"])
    assert saves["day"].between(contact_day, contact_day + timedelta(days=29)).all()
    first = pd.Timestamp(saves["day"].min(), tz="UTC")
    cut = base.events["event_time"] < first
    assert (
        helped.events[helped.events["event_time"] < first]
        .reset_index(drop=True)
        .equals(base.events[cut].reset_index(drop=True))
    )
    gone = helped.truth_users.set_index("user_id")["churn_time"].notna()
    gone_before = base.truth_users.set_index("user_id")["churn_time"].notna()
    assert gone[who["user_id"]].sum() < gone_before[who["user_id"]].sum()
    assert np.isfinite(helped.truth_daily["hazard"]).all()
