"""The retraining loop: its triggers (drift alert, realized skill below the floor, age) and
the evidence it reads from the monitoring histories without writing them."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from batch.outputs import batch_dir
from core.history import append_record
from core.partitions import partition_dir
from monitor.retrain import Evidence, gather_evidence, triggers
from served import registry
from training.evaluation import pr_auc_skill


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


# The evidence as the night's monitoring jobs recorded it. Batches of 03-10, 03-12 and
# 03-13; user_daily up to 03-16 and a horizon of 5 days: 03-10 and 03-12 are complete.
NOW = datetime(2026, 3, 17, 4, 0, tzinfo=UTC)
VERSION = "20260305T040000Z-aaaaaaaa"
BATCHES = [date(2026, 3, 10), date(2026, 3, 12), date(2026, 3, 13)]
DRIFT = {"status": "alert", "score_status": "alert", "alert_features": ["watch_minutes_7d"]}


def _drift_line(day: str, **changes: object) -> dict:
    return {"as_of": day, "model_version": VERSION, "rows": 100} | DRIFT | changes


def _outcome_line(day: str, skill: float) -> dict:
    return {"as_of": day, "model_version": VERSION, "pr_auc": 0.4, "base_rate": 0.2,
            "pr_auc_skill": skill}  # fmt: skip


@pytest.fixture
def night(make_settings):
    """Settings whose batches, user_daily and histories are those of a night just run."""
    settings = make_settings(horizon_days=5, max_model_age_days=30)
    created = (NOW - timedelta(days=12)).isoformat()
    metadata = {"created_at": created, "model_kind": "logistic",
                "feature_service": "churn_model_v1", "feature_refs": []}  # fmt: skip
    registry.save_model(settings.models_dir, VERSION, {"stub": "model"}, metadata)
    for day in BATCHES:
        batch_dir(settings.predictions_dir, day).mkdir(parents=True)
    for i in range(16):
        partition_dir(settings.user_daily_path, date(2026, 3, 1) + timedelta(days=i)).mkdir(
            parents=True
        )
    drift = settings.drift_history_path
    append_record(drift, _drift_line("2026-03-12", status="ok", alert_features=[]))
    append_record(drift, _drift_line("2026-03-13"))
    append_record(settings.outcomes_history_path, _outcome_line("2026-03-10", 0.31))
    append_record(settings.outcomes_history_path, _outcome_line("2026-03-12", 0.08))
    return settings


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_evidence_is_what_the_histories_recorded_and_nothing_is_written(night):
    before = _files(night.monitoring_dir)
    evidence = gather_evidence(night, VERSION, NOW)
    assert evidence == Evidence(
        drift_status="alert", drift_as_of="2026-03-13",
        drifted_features=["watch_minutes_7d", "the score"], realized_skill=0.08,
        realized_as_of="2026-03-12", model_age_days=12.0, notes=[],
    )  # fmt: skip
    assert _files(night.monitoring_dir) == before
    assert triggers(evidence, night) == [
        "drift alert on the batch of 2026-03-13 (watch_minutes_7d, the score)",
        "realized PR-AUC skill 0.08 < 0.10 on the batch of 2026-03-12",
    ]


def test_the_newest_line_of_a_date_counts(night):
    drift = night.drift_history_path
    append_record(drift, _drift_line("2026-03-13", status="warn", score_status="ok",
                                     alert_features=[]))  # fmt: skip
    append_record(night.outcomes_history_path, _outcome_line("2026-03-12", 0.3))  # a recomputation
    evidence = gather_evidence(night, VERSION, NOW)
    assert (evidence.drift_status, evidence.drifted_features) == ("warn", [])
    assert (evidence.realized_skill, evidence.realized_as_of) == (0.3, "2026-03-12")
    assert triggers(evidence, night) == []


def test_no_drift_line_for_the_newest_batch_is_no_drift_evidence_and_says_so(night, caplog):
    batch_dir(night.predictions_dir, date(2026, 3, 14)).mkdir()  # drift has not run on it
    with caplog.at_level(logging.WARNING, logger="monitor.retrain"):
        evidence = gather_evidence(night, VERSION, NOW)
    assert (evidence.drift_status, evidence.drift_as_of, evidence.drifted_features) == (
        None, None, [],
    )  # fmt: skip
    note = (
        "no drift record for the newest batch, 2026-03-14 (newest record: 2026-03-13): "
        "run `churn monitor drift`"
    )
    assert evidence.notes == [note]
    assert note in caplog.text
    assert not any(t.startswith("drift") for t in triggers(evidence, night))


def test_outcomes_behind_user_daily_are_no_realized_evidence_and_say_so(night):
    partition_dir(night.user_daily_path, date(2026, 3, 17)).mkdir()  # 03-13 is complete now
    evidence = gather_evidence(night, VERSION, NOW)
    assert (evidence.realized_skill, evidence.realized_as_of) == (None, None)
    assert evidence.notes == [
        "no outcomes record for the batch of 2026-03-13, whose horizon user_daily completes "
        "(newest record: 2026-03-12): run `churn monitor outcomes`"
    ]
    assert evidence.drift_status == "alert"  # the drift line is tonight's


def test_a_skipped_newest_date_leaves_the_newest_date_with_figures(night):
    append_record(night.outcomes_history_path, {"as_of": "2026-03-12", "skipped": "only negatives"})
    evidence = gather_evidence(night, VERSION, NOW)
    assert (evidence.realized_skill, evidence.realized_as_of, evidence.notes) == (
        0.31, "2026-03-10", [],
    )  # fmt: skip


def test_before_any_batch_or_complete_horizon(night, make_settings):
    for day in BATCHES[:2]:
        batch_dir(night.predictions_dir, day).rmdir()
    evidence = gather_evidence(night, VERSION, NOW)  # 03-13 is pending: nothing is missing
    assert (evidence.realized_skill, evidence.notes) == (None, [])

    batch_dir(night.predictions_dir, BATCHES[2]).rmdir()
    evidence = gather_evidence(night, VERSION, NOW)
    assert evidence.drift_status is None and evidence.realized_skill is None
    assert evidence.notes == [f"no batch in {night.predictions_dir}: no drift to look at"]
    assert evidence.model_age_days == 12.0
