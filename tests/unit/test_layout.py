"""The on-disk layout ``Settings`` derives, pinned: existing data and artifacts dirs stay
readable. Every stage and test reads these paths from ``Settings``; a rename is a migration,
not an edit, and fails here first."""

from __future__ import annotations

import pytest

DATA = {
    "validated_users_path": "validated/users.parquet",
    "validated_events_path": "validated/events",
    "validated_events_legacy_path": "validated/events.parquet",
    "validated_manifest_path": "validated/manifest.json",
    "truth_daily_path": "ground_truth/daily.parquet",
    "truth_users_path": "ground_truth/users.parquet",
    "truth_saves_path": "ground_truth/saves.parquet",
}
ARTIFACTS = {
    "drift_dir": "monitoring/drift",
    "drift_history_path": "monitoring/drift/history.jsonl",
    "outcomes_dir": "monitoring/outcomes",
    "outcomes_history_path": "monitoring/outcomes/history.jsonl",
    "uplift_dir": "monitoring/uplift",
    "uplift_history_path": "monitoring/uplift/history.jsonl",
    "retrain_dir": "monitoring/retrain",
    "retrain_history_path": "monitoring/retrain/history.jsonl",
    "estimate_dir": "monitoring/estimate",
    "estimate_history_path": "monitoring/estimate/history.jsonl",
    "nights_path": "monitoring/nightly/history.jsonl",
}


@pytest.mark.parametrize(("name", "where"), DATA.items())
def test_data_paths_keep_their_names(make_settings, name, where):
    settings = make_settings()
    assert getattr(settings, name) == settings.data_dir / where


@pytest.mark.parametrize(("name", "where"), ARTIFACTS.items())
def test_artifact_paths_keep_their_names(make_settings, name, where):
    settings = make_settings()
    assert getattr(settings, name) == settings.artifacts_dir / where
