"""The retraining loop's triggers: drift alert, realized performance below the floor, age."""

from __future__ import annotations

import pytest

from monitor.retrain import Evidence, triggers
from training.metrics import pr_auc_skill


def test_no_evidence_and_healthy_evidence_trigger_nothing(make_settings):
    settings = make_settings()
    assert triggers(Evidence(), settings) == []
    healthy = Evidence(drift_status="warn", drift_as_of="2026-11-20", realized_skill=0.31,
                       realized_as_of="2026-10-01", model_age_days=12)  # fmt: skip
    assert triggers(healthy, settings) == []


def test_each_trigger_fires_on_its_own_and_says_why(make_settings):
    settings = make_settings(max_model_age_days=30, realized_pr_auc_skill_floor=0.10)
    drift = triggers(Evidence(drift_status="alert", drift_as_of="2026-11-20",
                              drifted_features=["watch_minutes_7d"]), settings)  # fmt: skip
    assert drift == ["drift alert on the batch of 2026-11-20 (watch_minutes_7d)"]
    realized = triggers(Evidence(realized_skill=0.08, realized_as_of="2026-10-01"), settings)
    assert realized == ["realized PR-AUC skill 0.08 < 0.10 on the batch of 2026-10-01"]
    assert triggers(Evidence(realized_skill=0.10), settings) == []  # at the floor: not below
    assert triggers(Evidence(model_age_days=30), settings) == []  # at the limit: not older
    old = triggers(Evidence(model_age_days=31), settings)
    assert old == ["production model is 31 days old (> 30)"]
    everything = Evidence(drift_status="alert", drift_as_of="d", realized_skill=-0.02,
                          realized_as_of="r", model_age_days=90)  # fmt: skip
    assert len(triggers(everything, settings)) == 3


def test_a_sound_model_at_a_high_churn_rate_does_not_retrain(make_settings):
    """Half the users churn: PR-AUC 0.70 is a lift of 1.35, under the old lift floor of 2
    (which no model can pass above a base rate of 0.5), but a skill of 0.375."""
    base_rate, pr_auc = 0.52, 0.70
    assert pr_auc / base_rate == pytest.approx(1.35, abs=5e-3)  # < 2: the old rule fired
    skill = pr_auc_skill(pr_auc, base_rate)
    assert skill == pytest.approx(0.375)
    evidence = Evidence(realized_skill=skill, realized_as_of="2026-10-01")
    assert triggers(evidence, make_settings()) == []


def test_the_realized_floor_sits_under_the_promotion_floor(make_settings):
    """So the noise of one batch around a model the gate just passed does not retrain."""
    settings = make_settings()
    assert settings.realized_pr_auc_skill_floor == 0.10
    assert settings.realized_pr_auc_skill_floor < settings.min_pr_auc_skill
