"""The nightly estimate in issue 27's three worlds: what it sees, and what only labels see.

One seed, three generated worlds that are the same until the drift day: ``baseline``,
``drift`` (weaker sign-ups and another channel mix from that day: the inputs move) and
``concept`` (the same behaviour carries five times the churn hazard: the inputs do not
move). A logistic model is fitted on nights whose labels close before the drift day; every
night from 20 days before the drift day to the last one with 30 days of labels is scored,
estimated (``monitor.cbpe.expected_metrics``, as ``churn monitor estimate`` does), and set
against its realized labels (``training.evaluation.evaluate``, as ``churn monitor outcomes``
does) and its calibration error. Pure functions on arrays (``night_arrays``): about 10 s.

What is asserted is the acceptance restated for label noise. "Within 0.05 of realized on
every night" cannot hold at any size: a night's realized precision@50 has a label-noise
standard deviation of about 0.07 even when the estimate is exact. So: realized inside the
estimate's 5-95 % band (or, for precision@K, its label-noise interval) on three nights of four
(0.9 if the model were calibrated everywhere; seeds 5, 6 and 7 give 0.80-1.00), the expected
churn rate within two label-noise deviations on average. Seeds 6 and 7 give the same
verdicts with the same margins (docs/performance.md has the figures).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from core.settings import Settings
from monitor.calibration import calibration_level, expected_calibration_error
from monitor.cbpe import expected_metrics
from monitor.estimate import nights_under_floor
from tests.integration.night_arrays import LABEL_DAYS, features, fit_on, night, world_days
from training.evaluation import evaluate

pytestmark = pytest.mark.integration

USERS, DAYS, DRIFT_DAY, SEED = 3000, 150, 100, 5
K, DRAWS = 50, 200
FIT_NIGHTS = range(30, DRIFT_DAY - LABEL_DAYS + 1, 2)  # labels closed before the drift day
NIGHTS = range(DRIFT_DAY - 20, DAYS - LABEL_DAYS + 1)  # every night with its labels
Z90 = 1.645  # a normal's 5-95 % half-width, in standard deviations
CALIBRATION_ALERT = Settings.model_fields["calibration_error_alert"].default
SKILL_FLOOR = Settings.model_fields["realized_pr_auc_skill_floor"].default


def _nights(scenario: str) -> pd.DataFrame:
    """Per night: the estimate, the realized figures, their label noise and the ECE."""
    daily = world_days(scenario, USERS, DAYS, SEED, DRIFT_DAY)
    model = fit_on(daily, FIT_NIGHTS)
    rows = []
    for t in NIGHTS:
        scored = night(daily, t)
        p, y = model.predict_proba(features(scored))[:, 1], scored["churned"].to_numpy()
        expected, realized = expected_metrics(p, K, DRAWS, SEED), evaluate(y, p, k=K)
        top = np.sort(p)[-K:]
        rows.append(
            {
                "night": t,
                "expected": asdict(expected),  # a history line's "expected"
                "churn_rate": expected.churn_rate,
                "realized_rate": realized["base_rate"],
                "rate_noise": np.sqrt((p * (1 - p)).sum()) / p.size,
                "precision_at_k": expected.precision_at_k,
                "realized_precision_at_k": realized["precision_at_k"],
                "precision_noise": np.sqrt((top * (1 - top)).sum()) / K,
                "pr_auc": expected.pr_auc.mean,
                "pr_auc_lower": expected.pr_auc.lower,
                "pr_auc_upper": expected.pr_auc.upper,
                "realized_pr_auc": realized["pr_auc"],
                "calibration_error": expected_calibration_error(y, p),
                "level_off": calibration_level(y, p).off,
            }
        )
    return pd.DataFrame(rows).set_index("night")


@pytest.fixture(scope="module")
def worlds() -> dict[str, pd.DataFrame]:
    return {scenario: _nights(scenario) for scenario in ("baseline", "drift", "concept")}


def _share(condition: pd.Series) -> float:
    return float(condition.mean())


def test_on_the_baseline_the_realized_figures_fall_within_the_estimates_label_noise(worlds):
    base = worlds["baseline"]
    in_band = base["realized_pr_auc"].between(base["pr_auc_lower"], base["pr_auc_upper"])
    assert _share(in_band) >= 0.75, base[["pr_auc_lower", "realized_pr_auc", "pr_auc_upper"]]
    precision_z = (base["realized_precision_at_k"] - base["precision_at_k"]) / base[
        "precision_noise"
    ]
    assert _share(precision_z.abs() <= Z90) >= 0.75, precision_z
    rate_miss = (base["churn_rate"] - base["realized_rate"]).mean()
    assert abs(rate_miss) <= 2 * base["rate_noise"].mean(), rate_miss
    assert (base["calibration_error"] < CALIBRATION_ALERT).all()
    assert not base["level_off"].any()
    # No alert before the labels where nothing went wrong.
    assert nights_under_floor([{"expected": e} for e in base["expected"]], SKILL_FLOOR) == 0


def test_on_the_drift_world_the_estimate_moves_a_horizon_before_the_labels_can(worlds):
    base, drift = worlds["baseline"], worlds["drift"]
    after = base.index >= DRIFT_DAY
    assert (drift.loc[~after, "churn_rate"] == base.loc[~after, "churn_rate"]).all()  # one world
    moved = (drift["churn_rate"] - base["churn_rate"])[after] > base["rate_noise"][after]
    first_moved = moved.idxmax()
    assert moved.any() and first_moved <= DRIFT_DAY + 15, moved
    # The realized rate tells the change from label noise later, if at all, and its labels
    # arrive a horizon after their night: the estimate is at least 25 days ahead.
    shown = (drift["realized_rate"] - base["realized_rate"])[after] > 2 * base["rate_noise"][after]
    realized_known = (shown.idxmax() if shown.any() else DAYS - LABEL_DAYS) + LABEL_DAYS
    assert realized_known - first_moved >= 25, (first_moved, realized_known)
    assert not drift["level_off"].any()  # the inputs moved, the model's level still holds


def test_on_the_concept_world_the_estimate_stays_flat_and_only_calibration_sees_it(worlds):
    base, concept = worlds["baseline"], worlds["concept"]
    half_band = (base["pr_auc_upper"] - base["pr_auc_lower"]) / 2
    assert ((concept["pr_auc"] - base["pr_auc"]).abs() < half_band).all()  # the blind spot
    settled = concept.loc[DRIFT_DAY + 10 :]
    assert (settled["realized_pr_auc"] > settled["pr_auc_upper"]).all()  # what happened
    assert (settled["calibration_error"] > CALIBRATION_ALERT).all()  # what reveals it
    assert settled["calibration_error"].min() > 2 * base["calibration_error"].max()
    assert settled["level_off"].all()  # five times the hazard: the level is off as well
    assert nights_under_floor([{"expected": e} for e in concept["expected"]], SKILL_FLOOR) == 0
