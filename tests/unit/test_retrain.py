"""The retraining loop's triggers: drift alert, realized performance below the floor, age."""

from __future__ import annotations

from monitor.retrain import Evidence, triggers


def test_no_evidence_and_healthy_evidence_trigger_nothing(make_settings):
    settings = make_settings()
    assert triggers(Evidence(), settings) == []
    healthy = Evidence(drift_status="warn", drift_as_of="2026-11-20", realized_lift=3.1,
                       realized_as_of="2026-10-01", model_age_days=12)  # fmt: skip
    assert triggers(healthy, settings) == []


def test_each_trigger_fires_on_its_own_and_says_why(make_settings):
    settings = make_settings(max_model_age_days=30, realized_pr_auc_lift_floor=2.0)
    drift = triggers(Evidence(drift_status="alert", drift_as_of="2026-11-20",
                              drifted_features=["watch_minutes_7d"]), settings)  # fmt: skip
    assert drift == ["drift alert on the batch of 2026-11-20 (watch_minutes_7d)"]
    realized = triggers(Evidence(realized_lift=1.5, realized_as_of="2026-10-01"), settings)
    assert realized == ["realized PR-AUC lift 1.50 < 2.00 on the batch of 2026-10-01"]
    assert triggers(Evidence(model_age_days=30), settings) == []  # at the limit: not older
    old = triggers(Evidence(model_age_days=31), settings)
    assert old == ["production model is 31 days old (> 30)"]
    everything = Evidence(drift_status="alert", drift_as_of="d", realized_lift=1.0,
                          realized_as_of="r", model_age_days=90)  # fmt: skip
    assert len(triggers(everything, settings)) == 3
