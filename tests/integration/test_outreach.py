"""The holdout experiment end to end, on a simulated portal where outreach works, and one
where it does nothing.

``churn.outreach_demo.simulate_outreach``: lists a horizon apart, each split into arms by
the real batch (Feast's point-in-time join, the production model), the world generated
again with the contact arm's churn hazard cut, then ``churn monitor uplift``'s report.
The generator's truth says what outreach really did. The clock is pinned (arms hash the
date's period) and the world seeded, so the run is the same on any day.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from rich.console import Console

from batch.outputs import HIGH_RISK_FILE, PREDICTIONS_FILE, batch_dir
from churn.outreach_demo import simulate_outreach
from churn.progress import StageLog
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from feature_repo.store import open_store
from monitor.outcomes import realized_outcomes
from monitor.uplift import Z95, Effect
from served.arms import CONTACT, HOLDOUT, UNLISTED, assign_arms, read_assignments
from training.labels import build_labels
from training.outreach import contacts

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 4, 30, tzinfo=UTC)
USERS, DAYS, NIGHTS = 1500, 130, 3
EFFECT = 1.0  # outreach keeps every contacted user who would leave during the horizon
Z999 = 3.2905267314919255  # the normal quantile of a two-sided 99.9 % interval


@pytest.fixture(scope="module")
def runs(tmp_path_factory, isolated_settings):
    """(settings, run with outreach, run without): the second lists on the same model."""
    tmp = tmp_path_factory.mktemp("outreach")
    settings = isolated_settings(tmp, holdout_share=0.5, top_k=300, tuning_budget=1)
    log = StageLog(Console(file=io.StringIO(), width=120))
    try:
        works = simulate_outreach(settings, USERS, DAYS, NIGHTS, EFFECT, log, now=NOW)
        nothing = simulate_outreach(settings, USERS, DAYS, NIGHTS, 0.0, log, now=NOW, train=False)
        yield settings, works, nothing
    finally:
        open_store(settings).teardown()


def covers(found: Effect, truth: float) -> bool:
    """Whether the report's interval, widened from 95 % to 99.9 %, holds ``truth``.

    Six 95 % intervals (three nights, two worlds) all cover their truth only 74 % of the
    time: asking that here would fail one seed in four by luck. The same standard error
    at 99.9 % fails by luck once in 170 runs, and a biased estimate or a wrong standard
    error still shows. That the 95 % interval covers 95 % of the time is tested on
    thousands of simulated arms in ``tests/unit/test_uplift.py``.
    """
    centre, se = (found.low + found.high) / 2, (found.high - found.low) / (2 * Z95)
    return abs(truth - centre) <= Z999 * se


def test_with_outreach_every_nights_interval_covers_what_it_truly_did(runs):
    _, works, _ = runs
    measured = {night.as_of: night.overall.effect for night in works.report.evaluated}
    assert sorted(measured) == works.nights
    for night, truth in works.true_effect.items():
        assert truth < 0, f"outreach kept nobody of the list of {night}"
        assert covers(measured[night], truth), (night, truth, measured[night])


def test_without_an_effect_nothing_is_kept_and_every_interval_covers_zero(runs):
    _, _, nothing = runs
    assert set(nothing.true_effect.values()) == {0.0}
    assert [n.as_of for n in nothing.report.evaluated] == nothing.nights
    for night in nothing.report.evaluated:
        assert covers(night.overall.effect, 0.0), (night.as_of, night.overall.effect)


def test_the_lists_carry_the_arm_the_hash_gives(runs):
    settings, works, _ = runs
    for night in works.nights:
        listed = pd.read_csv(batch_dir(settings.predictions_dir, night) / HIGH_RISK_FILE)
        expected = assign_arms(listed[ENTITY_KEY], night, 0.5, settings.holdout_period_days)
        assert listed["arm"].tolist() == expected.tolist()
        assert {CONTACT, HOLDOUT} <= set(listed["arm"])
        predictions = pd.read_parquet(batch_dir(settings.predictions_dir, night) / PREDICTIONS_FILE)
        arms = predictions.set_index(ENTITY_KEY)["arm"]
        assert arms[listed[ENTITY_KEY]].tolist() == listed["arm"].tolist()
        assert (arms.drop(listed[ENTITY_KEY]) == UNLISTED).all()
        assert read_assignments(settings, night)[ENTITY_KEY].tolist() == listed[ENTITY_KEY].tolist()


def test_realized_outcomes_leave_the_contacted_out(runs):
    settings, works, _ = runs
    report = realized_outcomes(settings)
    by_night = {o.as_of: o for o in report.evaluated}
    for night in works.nights:
        scored = pd.read_parquet(batch_dir(settings.predictions_dir, night) / PREDICTIONS_FILE)
        contacted = int((scored["arm"] == CONTACT).sum())
        assert contacted > 0
        assert by_night[night].contacted_left_out == contacted
        assert by_night[night].rows == len(scored) - contacted


def test_training_leaves_out_the_label_windows_outreach_touched(runs):
    settings, _, _ = runs
    horizon = timedelta(days=settings.horizon_days)
    labels = build_labels(settings)
    contacted = contacts(settings)
    assert not contacted.empty
    stamps = pd.to_datetime(labels[TIMESTAMP_FIELD], utc=True)
    touched = labels.assign(T=stamps).merge(contacted, on=ENTITY_KEY)
    night = pd.to_datetime(touched["date"]).dt.tz_localize(UTC)
    overlap = (touched["T"] > night - horizon) & (touched["T"] < night + horizon)
    assert not overlap.any(), touched.loc[overlap].head()
    # The holdout arm's rows of the same windows stay: they are the untouched counterfactual.
    kept = labels.assign(T=stamps)
    holdout = pd.concat(
        read_assignments(settings, d).assign(date=d) for d in sorted(set(contacted["date"]))
    )
    holdout = holdout.loc[holdout["arm"] == HOLDOUT, [ENTITY_KEY, "date"]]
    same = kept.merge(holdout, on=ENTITY_KEY)
    night = pd.to_datetime(same["date"]).dt.tz_localize(UTC)
    assert ((same["T"] > night - horizon) & (same["T"] < night + horizon)).any()
