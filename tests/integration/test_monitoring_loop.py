"""The monitoring loop end to end, on the generator's drift scenario and on a world without it.

Production is a model trained before the world changed; tonight's batch scores the
changed world. Drift must show on the features the scenario moves and not on the others,
retrain-if-needed must retrain and gate the candidate, and the API must follow a
promotion by itself. Without drift the same loop leaves production alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from fastapi.testclient import TestClient

from batch.job import score_population
from core.history import read_records
from feature_repo.feast_cli import apply_definitions
from feature_repo.store import materialize, open_store
from ingestion.generate import generate_demo_data, write_demo_data
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features
from ingestion.validate import run_validation
from monitor.drift import drift_report, write_drift_report
from monitor.outcomes import realized_outcomes
from monitor.retrain import retrain_if_needed
from online_api.app import create_app
from served import registry
from tests.conftest import PRODUCT_TUNING_BUDGET
from tests.integration.services import after_a_whole_check
from training.promote import decisions, force
from training.train import train_models

pytestmark = pytest.mark.integration

DAYS = 150
DRIFT_DAY = DAYS - 25  # the world changed 25 days ago: the model is younger than its age limit
END = datetime.combine(datetime.now(UTC).date(), time.min, UTC)
START = END.date() - timedelta(days=DAYS)
CUT = datetime.combine(START + timedelta(days=DRIFT_DAY), time.min, UTC)
# The nightly list of a 600-user portal (precision@K is per night): the demo's K of 50 is
# for 2,000 users.
TEAM_LIST = 10
# A portal large enough that the retrained model ranks better than the days since the last
# activity, as the gate asks: at 400 users it trails that rule on ROC-AUC (0.83 vs 0.86).
USERS = 600
# What the drift scenario moves (half the watch time) and what it leaves alone.
MOVED = ("watch_minutes_7d", "watch_minutes_14d", "watch_minutes_30d")
UNMOVED = ("tickets_30d", "payments_failed_30d", "enrolments_30d", "plan", "country")


def _world(settings, scenario: str):
    data = generate_demo_data(
        n_users=USERS, days=DAYS, seed=21, start=START, scenario=scenario, drift_day=DRIFT_DAY
    )
    write_demo_data(data, settings)
    assert run_validation(settings).passed
    # Production was trained on the world as it was before the drift day.
    build_user_daily(settings, now=CUT)
    build_rolling_features(settings)
    apply_definitions(settings)
    before = train_models(settings, now=CUT)
    force(settings, before.versions[before.best], "trained before the world changed")
    # Tonight: the whole history, features online, the nightly batch.
    build_user_daily(settings, now=END)
    build_rolling_features(settings)
    materialize(settings, end=END)
    score_population(settings, as_of=END)
    return settings


@pytest.fixture(scope="module")
def drifted(tmp_path_factory, isolated_settings):
    # Tuned as the product tunes: the retrained model must beat the recency reference.
    settings = isolated_settings(tmp_path_factory.mktemp("drift"), max_event_age_hours=0,
                                 model_reload_seconds=0.05, top_k=TEAM_LIST,
                                 tuning_budget=PRODUCT_TUNING_BUDGET)  # fmt: skip
    try:
        yield _world(settings, "drift")
    finally:
        open_store(settings).teardown()


@pytest.fixture(scope="module")
def steady(tmp_path_factory, isolated_settings):
    settings = isolated_settings(tmp_path_factory.mktemp("steady"), max_event_age_hours=0,
                                 top_k=TEAM_LIST)  # fmt: skip
    try:
        yield _world(settings, "baseline")
    finally:
        open_store(settings).teardown()


def _gate_record(settings, candidate: str) -> dict:
    return next(r for r in decisions(settings.models_dir) if r["candidate"] == candidate)


def _monitor_the_night(settings) -> None:
    """What the night runs before retrain-if-needed, which reads what these record."""
    write_drift_report(drift_report(settings), settings)
    realized_outcomes(settings)  # tonight's batch is pending: no figures yet


def _retrain_history(settings) -> list[dict]:
    return read_records(settings.retrain_history_path)


def test_drift_shows_on_the_moved_features_only(drifted):
    report = drift_report(drifted)
    assert report.status == "alert"
    for name in MOVED:
        assert report.features[name].status == "alert", (name, report.features[name].psi)
    for name in UNMOVED:
        assert report.features[name].status == "ok", (name, report.features[name].psi)


def test_drift_retrains_and_the_api_serves_the_promoted_model(drifted):
    before = registry.production(drifted.models_dir)
    with TestClient(create_app(drifted)) as client:
        assert client.get("/model").json()["version"] == before
        _monitor_the_night(drifted)
        decision = retrain_if_needed(drifted, now=END)
        assert any(t.startswith("drift alert") for t in decision.triggers), decision.triggers
        assert decision.candidate not in (None, before)
        gate = _gate_record(drifted, decision.candidate)
        # Promoted only by beating production on the newest window (the candidate's own).
        beats = gate["candidate_metrics"]["pr_auc"] >= (
            gate["production_metrics"]["pr_auc"] + drifted.promotion_margin
        )
        assert decision.promoted == gate["promote"]
        assert not decision.promoted or beats
        assert decision.promoted, f"the retrained model was refused: {decision.gate_reasons}"
        assert registry.production(drifted.models_dir) == decision.candidate
        after_a_whole_check(client.app.state.service.holder)
        assert client.get("/model").json()["version"] == decision.candidate
        user = client.post("/churn-risk:batch", json={"user_ids": ["u000001", "u000002"]})
        served = [i["result"] for i in user.json()["results"] if i["result"]]
        assert served and all(r["model_version"] == decision.candidate for r in served)
    assert decision.evidence.notes == []  # drift and outcomes were recorded first
    assert _retrain_history(drifted)[-1]["candidate"] == decision.candidate


def test_without_drift_the_loop_leaves_production_alone(steady):
    before = registry.production(steady.models_dir)
    report = drift_report(steady)
    assert report.status != "alert", {
        name: round(f.psi, 3) for name, f in report.features.items() if report.level(name) != "ok"
    } | {"score": report.score_psi}
    _monitor_the_night(steady)
    decision = retrain_if_needed(steady, now=END)
    assert decision.triggers == []
    assert decision.evidence.drift_status == report.status and decision.evidence.notes == []
    assert decision.candidate is None
    assert registry.production(steady.models_dir) == before
    assert len(registry.list_versions(steady.models_dir)) == 2  # nothing was trained
    assert _retrain_history(steady)[-1]["triggers"] == []
