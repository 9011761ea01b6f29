"""The uplift report's statistics and bookkeeping (``monitor.uplift``), on known numbers and
on simulated arms whose true difference is known."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from core import partitions
from monitor.uplift import (
    CANNOT_TELL,
    KEEPS,
    LOSES,
    ArmRate,
    NightUplift,
    Stratum,
    UpliftReport,
    adjusted_difference,
    effect,
    horizons_not_working,
    night_uplift,
    realized_uplift,
    uplift_samples,
    wilson,
)
from served.arms import write_assignments

NIGHT = date(2026, 1, 10)


def _arm(churned: int, users: int) -> ArmRate:
    low, high = wilson(churned, users)
    return ArmRate(users, churned, churned / users, low, high)


def _listed(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    """(band, arm, churned, monthly revenue) per user."""
    return pd.DataFrame(rows, columns=["risk_band", "arm", "churned", "monthly_revenue"])


def test_wilson_matches_the_published_intervals():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)


@pytest.mark.parametrize(
    ("p_contact", "p_holdout", "contact", "holdout"),
    [(0.30, 0.40, 900, 100), (0.10, 0.10, 180, 20), (0.55, 0.60, 400, 400), (0.05, 0.12, 300, 40)],
)
def test_the_difference_interval_covers_the_true_difference_95_times_in_100(
    p_contact, p_holdout, contact, holdout
):
    """At least nominal, never much wider: Agresti-Caffo errs on the safe side (about 98 %)
    when the holdout is a few dozen users and the rate is near 0, where rate ± 2 SE falls short."""
    rng = np.random.default_rng(0)
    covered = 0
    replications = 2000
    for churned_c, churned_h in zip(
        rng.binomial(contact, p_contact, replications),
        rng.binomial(holdout, p_holdout, replications),
        strict=True,
    ):
        a, b = _arm(int(churned_c), contact), _arm(int(churned_h), holdout)
        centre, variance = adjusted_difference(a, b)
        found = effect(a.rate - b.rate, centre, variance, contact, 0.0)
        covered += found.low <= p_contact - p_holdout <= found.high
    assert 0.935 <= covered / replications <= 0.99


def test_the_band_weighted_interval_covers_when_the_arms_drew_different_risk_mixes():
    """Bands churn at 0.6, 0.3, 0.1; outreach cuts each by a third. Arms are drawn at random,
    so a night's contact arm may hold more of the high band than its holdout: the pooled
    difference must still centre on the true one (-0.1 per band, so -0.1 overall)."""
    rng = np.random.default_rng(1)
    bands = {"high": (0.6, 300), "medium": (0.3, 300), "low": (0.15, 300)}
    covered, estimates = 0, []
    for _ in range(400):
        rows = []
        for band, (rate, size) in bands.items():
            holdout = rng.random(size) < 0.2
            churn = rng.random(size) < np.where(holdout, rate, rate - 0.1)
            rows += [(band, "holdout" if h else "contact", int(c), 10.0)
                     for h, c in zip(holdout, churn, strict=True)]  # fmt: skip
        found = night_uplift(_listed(rows), NIGHT, 30).overall.effect
        estimates.append(found.difference)
        covered += found.low <= -0.1 <= found.high
    assert 0.92 <= covered / 400 <= 0.98
    assert np.mean(estimates) == pytest.approx(-0.1, abs=0.01)


def test_what_a_difference_is_worth():
    kept = effect(-0.05, -0.05, (0.02 / 1.959963984540054) ** 2, 1000, 20_000.0)
    assert kept.verdict == KEEPS
    assert (kept.low, kept.high) == pytest.approx((-0.07, -0.03))
    assert kept.retained_users == pytest.approx(50)
    assert kept.retained_revenue == pytest.approx(1000.0)
    assert (kept.retained_revenue_low, kept.retained_revenue_high) == pytest.approx((600, 1400))
    assert kept.contacts_per_retained == pytest.approx(20)
    assert (kept.contacts_per_retained_low, kept.contacts_per_retained_high) == pytest.approx(
        (1 / 0.07, 1 / 0.03)
    )
    unsure = effect(-0.01, -0.01, (0.02 / 1.959963984540054) ** 2, 1000, 20_000.0)
    assert unsure.verdict == CANNOT_TELL
    assert unsure.contacts_per_retained == pytest.approx(100)
    assert unsure.contacts_per_retained_high is None  # the interval reaches 0: any number
    worse = effect(0.04, 0.04, (0.02 / 1.959963984540054) ** 2, 1000, 20_000.0)
    assert worse.verdict == LOSES
    assert worse.retained_revenue == pytest.approx(-800)
    assert worse.contacts_per_retained is None


def test_a_band_without_holdout_users_is_reported_but_not_measured():
    rows = [("high", "contact", 1, 5.0)] * 8 + [("high", "holdout", 1, 5.0)] * 2
    rows += [("low", "contact", 0, 5.0)] * 6  # no holdout in the low band
    night = night_uplift(_listed(rows), NIGHT, 30)
    assert [s.band for s in night.strata] == ["all", "high", "low"]
    low = night.strata[2]
    assert low.effect is None and low.contact.users == 6 and low.holdout.users == 0
    # The list's difference is the high band's alone, though its arms' rates are the list's.
    assert night.overall.effect.difference == pytest.approx(0.0)
    assert night.overall.contact.rate == pytest.approx(8 / 14)


def _night(as_of: date, difference: float | None) -> NightUplift:
    arm = _arm(5, 10)
    found = None if difference is None else effect(difference, difference, 1e-4, 10, 0.0)
    return NightUplift(as_of, 30, [Stratum("all", arm, arm, 0.0, found)])


def test_not_working_counts_horizons_a_horizon_apart_newest_first():
    start = date(2026, 1, 1)
    daily = [_night(start + timedelta(days=i), 0.01) for i in range(95)]
    # Nights 94, 64, 34, 4 are a horizon apart: four horizons, whatever lies between.
    assert horizons_not_working(daily, 30) == 4
    daily[34] = _night(daily[34].as_of, -0.02)  # outreach kept users in that horizon
    assert horizons_not_working(daily, 30) == 2
    daily[94] = _night(daily[94].as_of, None)  # no holdout: no evidence
    assert horizons_not_working(daily, 30) == 0


def test_the_gauges_follow_the_newest_night():
    working = UpliftReport([_night(NIGHT, -0.05)], [], 0, False, None)
    names = {s.name: s for s in uplift_samples(working)}
    assert names["churn_uplift_contacts_per_retained_user"].value == pytest.approx(20)
    assert names["churn_uplift_outreach_not_working"].value == 0
    failing = UpliftReport([_night(NIGHT, 0.02)], [], 3, True, None)
    names = {s.name: s for s in uplift_samples(failing)}
    assert "churn_uplift_contacts_per_retained_user" not in names
    assert names["churn_uplift_outreach_not_working"].value == 1
    assert names["churn_uplift_horizons_not_working"].value == 3
    assert uplift_samples(UpliftReport([], [], 0, False, None)) == []


def _daily(settings, days: list[date], active: dict[str, list[date]]) -> None:
    users = sorted(active)
    for day in days:
        frame = pd.DataFrame({"user_id": users,
                              "active": [int(day in active[u]) for u in users]})  # fmt: skip
        path = partitions.partition_dir(settings.user_daily_path, day) / "part.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path)


def test_realized_uplift_reads_the_arms_and_the_labels_and_appends_only_what_changed(
    make_settings,
):
    settings = make_settings(horizon_days=5)
    listed = pd.DataFrame(
        {"user_id": ["a", "b", "c", "d"], "arm": ["contact", "contact", "holdout", "holdout"],
         "risk_band": "high", "churn_risk": 0.5, "monthly_revenue": [10.0, 30.0, 5.0, 5.0],
         "model_version": "v1"}
    )  # fmt: skip
    write_assignments(settings, NIGHT, listed)
    later = NIGHT + timedelta(days=3)
    write_assignments(settings, later, listed)
    window = [NIGHT + timedelta(days=i) for i in range(5)]
    # a stays (active on day 2), b churns, c stays, d churns; nobody is active after the window.
    _daily(settings, window, {"a": [window[2]], "b": [], "c": [window[0]], "d": []})

    report = realized_uplift(settings)
    assert [n.as_of for n in report.evaluated] == [NIGHT]
    assert report.pending == [(later, later + timedelta(days=4))]
    whole = report.latest.overall
    assert (whole.contact.churned, whole.contact.users) == (1, 2)
    assert (whole.holdout.churned, whole.holdout.users) == (1, 2)
    assert whole.contacted_revenue == 40.0
    assert whole.effect.difference == 0.0
    assert report.horizons_not_working == 1 and not report.not_working  # alert after 3

    lines = report.history_path.read_text().splitlines()
    assert len(lines) == 1
    realized_uplift(settings)
    assert report.history_path.read_text().splitlines() == lines
