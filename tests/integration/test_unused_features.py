"""A feature family the data never fills (a portal without quizzes) is left out of the
model with one log line, and the batch and the API serve the model from what it uses."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from batch.job import score_population
from feature_repo.feast_cli import apply_definitions
from feature_repo.spec import feature_names
from feature_repo.store import materialize, open_store
from ingestion.generate import generate_demo_data, write_demo_data
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features
from ingestion.validate import run_validation
from online_api.app import create_app
from served import registry
from tests.integration.world import TODAY
from training.promote import force
from training.train import train_models

pytestmark = pytest.mark.integration
DAYS = 120


def test_a_portal_without_quizzes_trains_and_serves_without_them(
    tmp_path, isolated_settings, caplog
):
    settings = isolated_settings(tmp_path)
    data = generate_demo_data(
        n_users=300, days=DAYS, seed=5, start=TODAY.date() - timedelta(days=DAYS)
    )
    no_quizzes = data.events[data.events["event_type"] != "quiz_attempt"].reset_index(drop=True)
    write_demo_data(replace(data, events=no_quizzes), settings)
    try:
        assert run_validation(settings).passed
        build_user_daily(settings, now=TODAY)
        build_rolling_features(settings)
        apply_definitions(settings)
        materialize(settings, end=TODAY)
        with caplog.at_level(logging.WARNING, logger="training.train"):
            trained = train_models(settings, now=TODAY)

        quiz = {name for name in feature_names(settings.windows) if name.startswith("quiz_")}
        metadata = registry.load_metadata(settings.models_dir, trained.versions[trained.best])
        left_out = metadata["left_out_features"]
        assert quiz <= set(left_out)  # zero counts, null means (on 300 users, maybe others)
        used = {ref.split(":", 1)[1] for ref in metadata["feature_refs"]}
        assert used and used.isdisjoint(left_out)
        assert used | set(left_out) == set(feature_names(settings.windows))
        assert set(metadata["numeric_features"]) | set(metadata["categorical_features"]) == used
        [line] = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
        assert f"left out {len(left_out)} features" in line and "quiz_score_mean_7d" in line

        force(settings, trained.versions[trained.best], "a portal without quizzes")
        run = score_population(settings, as_of=TODAY)
        assert run.scored > 0 and run.skipped == 0
        predictions = pd.read_parquet(run.output_dir / "predictions.parquet")
        user = predictions["user_id"].iloc[0]
        with TestClient(create_app(settings)) as client:
            answer = client.get(f"/users/{user}/churn-risk")
            assert answer.status_code == 200, answer.text
            factors = {f["feature"] for f in answer.json()["top_factors"]}
            assert factors and factors <= used
    finally:
        open_store(settings).teardown()
