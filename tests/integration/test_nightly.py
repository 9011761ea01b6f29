"""`churn nightly` for real: every step as a process of its own, job metrics on a real
Pushgateway, the night's outputs on disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from churn.nightly import FAILED_STEP
from core.partitions import partition_dir
from core.settings import Settings
from feature_repo.store import open_store
from monitor.jobs import FAILURE, SUCCESS
from tests.integration.test_push import pushed_samples, running_pushgateway
from tests.integration.world import TODAY, build_world
from training.promote import force
from training.train import train_models

pytestmark = pytest.mark.integration

JOBS = ("features", "materialize", "batch", "drift", "outcomes", "skew", "retrain")
CHURN = Path(sys.executable).with_name("churn")


def churn_nightly(settings: Settings, day: str) -> subprocess.CompletedProcess[str]:
    """``churn nightly --day`` as the schedule and the CronJob run it."""
    return subprocess.run(
        [CHURN, "nightly", "--day", day],
        env=os.environ | settings.as_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_night_runs_every_job_and_reports_each_run(tmp_path, isolated_settings):
    with running_pushgateway(tmp_path) as gateway:
        settings = isolated_settings(tmp_path / "world", pushgateway_url=gateway)
        try:
            # The night re-validates and rebuilds yesterday, as it would after new data.
            build_world(settings, users=300, days=120, end=TODAY)
            trained = train_models(settings, now=TODAY)
            force(settings, trained.versions[trained.best], "nightly test")
            yesterday = (TODAY - timedelta(days=1)).date().isoformat()
            night = churn_nightly(settings, yesterday)
            assert night.returncode == 0, night.stdout[-3000:] + night.stderr[-3000:]
            assert (settings.predictions_dir / f"as_of={TODAY.date()}" / "high_risk.csv").exists()
            assert list((settings.monitoring_dir / "drift").glob("as_of=*.json"))
            assert (settings.monitoring_dir / "retrain" / "history.jsonl").exists()
            for job in JOBS:
                pushed = pushed_samples(gateway, f"churn_{job}")
                names = {name for name, _ in pushed}
                assert "churn_job_last_success_timestamp_seconds" in names, (job, names)
                assert "churn_job_duration_seconds" in names, job
            batch = {name for name, _ in pushed_samples(gateway, "churn_batch")}
            assert "churn_batch_users_scored" in batch  # the job's own figures stay
            fresh = pushed_samples(gateway, "churn_materialize")
            newest = next(v for (n, _), v in fresh.items() if n.startswith("churn_online_features"))
            assert newest == TODAY.timestamp()  # yesterday's row, stamped today 00:00
            completed = pushed_samples(gateway, "churn_nightly")
            assert completed[(FAILED_STEP, (("day", yesterday),))] == 0.0
        finally:
            open_store(settings).teardown()


def test_a_night_whose_features_fail_scores_nothing_and_names_the_step(tmp_path, isolated_settings):
    """The features of the day before yesterday are gone (a night was lost): tonight's
    ``features build --as-of`` fails for real, and the batch never runs on older features."""
    with running_pushgateway(tmp_path) as gateway:
        settings = isolated_settings(tmp_path / "world", pushgateway_url=gateway)
        try:
            build_world(settings, users=300, days=60, end=TODAY, online=False)
            day = (TODAY - timedelta(days=1)).date()
            lost = day - timedelta(days=1)
            shutil.rmtree(partition_dir(settings.features_path, lost))
            night = churn_nightly(settings, day.isoformat())
            output = night.stdout + night.stderr
            assert night.returncode == 1, output
            assert f"features for {lost} are missing" in output  # the step's own error
            assert (
                "the night stops at features; not run: materialize, batch, drift, outcomes, "
                "skew, retrain" in output
            )
            assert "churn batch score" not in output  # never started
            assert not settings.predictions_dir.exists() or not any(
                settings.predictions_dir.iterdir()
            ), "the batch wrote predictions"
            # What the alerts read: the step that stopped the night, its own failure, and
            # nothing at all from the steps that never ran.
            nightly = pushed_samples(gateway, "churn_nightly")
            failed = (("day", day.isoformat()), ("exit_code", "1"), ("step", "features"))
            assert nightly[(FAILED_STEP, failed)] == 1.0
            assert any(name == FAILURE for name, _ in nightly), nightly
            features = {name for name, _ in pushed_samples(gateway, "churn_features")}
            assert FAILURE in features and SUCCESS not in features
            for job in JOBS[1:]:
                assert pushed_samples(gateway, f"churn_{job}") == {}, job
        finally:
            open_store(settings).teardown()
