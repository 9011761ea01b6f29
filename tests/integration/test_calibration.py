"""The calibration check sees what the performance estimate cannot: concept drift.

On the generator's concept world the same behaviour carries five times the churn hazard
from the concept day on, while the inputs' distribution stays the baseline's. A model
fitted on nights whose labels closed before that day is then miscalibrated on the nights
after it (ECE above ``CHURN_CALIBRATION_ERROR_ALERT``), and stays calibrated on the baseline
world of the same seed. Pure functions (simulate, label, fit, ECE) on seeded worlds, at a
size where the verdicts have a wide margin: nights of about 1,600 users, baseline ECE at
most 0.021, concept at least 0.10 ten days on (threshold 0.05).

Then ``churn monitor outcomes`` end to end on the hand-made outcomes world of
``tests/unit/test_outcomes.py``: the history fields, the plots, the console and the
gauges as a real Pushgateway holds them.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from churn.cli import app
from core.contract import ACTIVE_EVENT_TYPES
from core.settings import Settings
from ingestion.generate import GeneratedData, generate_demo_data
from monitor.calibration import expected_calibration_error
from monitor.outcomes import history_path, read_history, reliability_path
from tests.integration.test_push import pushed_samples, running_pushgateway
from tests.unit.test_outcomes import (
    ACTIVITY,
    HORIZON,
    SCORED,
    D,
    predictions,
    write_batch,
    write_user_daily,
)

pytestmark = pytest.mark.integration

START = date(2024, 1, 1)
USERS, DAYS, CONCEPT_DAY, SEED = 3000, 150, 100, 5
LABEL_DAYS = Settings.model_fields["horizon_days"].default  # 30
LOOKBACK = Settings.model_fields["active_lookback_days"].default  # 14
THRESHOLD = Settings.model_fields["calibration_error_alert"].default
FEATURES = ("active_days_7d", "active_days_30d", "logins_7d", "watch_minutes_30d",
            "days_since_last_activity")  # fmt: skip
# Fitted on nights whose label windows close before the concept day; judged after it.
FIT_NIGHTS = range(30, CONCEPT_DAY - LABEL_DAYS + 1, 2)
JUDGED_NIGHTS = range(CONCEPT_DAY + 10, DAYS - LABEL_DAYS + 1, 5)


def _daily(data: GeneratedData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """users × days: active (a learning event), logins, watch minutes."""
    events = data.events
    day = (events["event_time"] - pd.Timestamp(START, tz="UTC")).dt.days.to_numpy()
    user = events["user_id"].str[1:].astype(int).to_numpy()
    shape = (len(data.users), DAYS)
    active, logins, watch = np.zeros(shape, bool), np.zeros(shape), np.zeros(shape)
    learning = events["event_type"].isin(ACTIVE_EVENT_TYPES).to_numpy()
    active[user[learning], day[learning]] = True
    is_login = (events["event_type"] == "login").to_numpy()
    np.add.at(logins, (user[is_login], day[is_login]), 1)
    is_video = (events["event_type"] == "video_watch").to_numpy()
    np.add.at(watch, (user[is_video], day[is_video]), events["watch_minutes"].to_numpy()[is_video])
    return active, logins, watch


def _night(daily: tuple[np.ndarray, ...], t: int) -> pd.DataFrame:
    """The population at T = day ``t`` (active in the look-back), a few features from the
    days before T, and the label: no active day in [T, T + horizon)."""
    active, logins, watch = daily
    last = t - 1 - np.argmax(active[:, :t][:, ::-1], axis=1)
    frame = pd.DataFrame(
        {
            "active_days_7d": active[:, t - 7 : t].sum(1),
            "active_days_30d": active[:, t - 30 : t].sum(1),
            "logins_7d": logins[:, t - 7 : t].sum(1),
            "watch_minutes_30d": watch[:, t - 30 : t].sum(1),
            "days_since_last_activity": t - last,
            "churned": (~active[:, t : t + LABEL_DAYS].any(1)).astype(int),
        }
    )
    return frame[active[:, t - LOOKBACK : t].any(1)]


def _nightly_ece(scenario: str) -> dict[int, float]:
    """ECE of each judged night for a logistic model fitted before the concept day."""
    data = generate_demo_data(n_users=USERS, days=DAYS, seed=SEED, start=START,
                              scenario=scenario, drift_day=CONCEPT_DAY)  # fmt: skip
    daily = _daily(data)
    fit = pd.concat([_night(daily, t) for t in FIT_NIGHTS])
    model = LogisticRegression(max_iter=1000).fit(np.log1p(fit[list(FEATURES)]), fit["churned"])
    out = {}
    for t in JUDGED_NIGHTS:
        night = _night(daily, t)
        risk = model.predict_proba(np.log1p(night[list(FEATURES)]))[:, 1]
        out[t] = expected_calibration_error(night["churned"], risk)
    return out


def test_a_model_from_before_the_concept_day_is_miscalibrated_after_it_only_there():
    baseline, concept = _nightly_ece("baseline"), _nightly_ece("concept")
    assert all(e < THRESHOLD for e in baseline.values()), baseline
    assert all(e > THRESHOLD for e in concept.values()), concept
    assert min(concept.values()) > 2 * max(baseline.values())  # not a near thing


def test_churn_monitor_outcomes_records_plots_prints_and_pushes_the_check(make_settings, tmp_path):
    with running_pushgateway(tmp_path) as url:
        settings = make_settings(horizon_days=HORIZON, top_k=10, pushgateway_url=url,
                                 calibration_error_alert=0.3)  # fmt: skip
        write_user_daily(settings, ACTIVITY)
        write_batch(settings, D, predictions(SCORED, seed=1))
        # A model sure that everybody churns, on the newest night: far off the labels.
        sure = predictions(SCORED, seed=2, version="v2").assign(churn_risk=0.99)
        write_batch(settings, date(2026, 3, 12), sure)
        result = CliRunner().invoke(app, ["monitor", "outcomes"], env=settings.as_env())
        assert result.exit_code == 0, result.output
        pushed = pushed_samples(url, "churn_outcomes")

    history = read_history(history_path(settings))
    calm, off = history["2026-03-10"], history["2026-03-12"]
    assert 0 < calm["calibration_error"] < 0.3 < off["calibration_error"]
    for record in (calm, off):
        assert sum(b["count"] for b in record["calibration_bins"]) == record["rows"]
        assert reliability_path(settings, date.fromisoformat(record["as_of"])).exists()
    assert pushed[("churn_outcomes_calibration_error", (("model_version", "v2"),))] == (
        pytest.approx(off["calibration_error"])
    )
    assert pushed[("churn_outcomes_calibration_error_threshold", ())] == 0.3
    output = " ".join(result.output.split())
    assert f"2026-03-12: calibration error {off['calibration_error']:.3f} exceeds" in output
    assert "2026-03-10: calibration error" not in output
