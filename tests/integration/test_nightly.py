"""`churn nightly` for real: every step as a process of its own, job metrics on a real
Pushgateway, the night's outputs on disk."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from feature_repo.store import open_store
from tests.integration.test_push import pushed_samples, running_pushgateway
from tests.integration.world import TODAY, build_world
from training.promote import force
from training.train import train_models

pytestmark = pytest.mark.integration

JOBS = ("features", "materialize", "batch", "drift", "outcomes", "skew", "retrain")


def test_the_night_runs_every_job_and_reports_each_run(tmp_path, isolated_settings):
    with running_pushgateway(tmp_path) as gateway:
        settings = isolated_settings(tmp_path / "world", pushgateway_url=gateway)
        try:
            # The night re-validates and rebuilds yesterday, as it would after new data.
            build_world(settings, users=300, days=120, end=TODAY)
            trained = train_models(settings, now=TODAY)
            force(settings, trained.versions[trained.best], "nightly test")
            yesterday = (TODAY - timedelta(days=1)).date().isoformat()
            churn = Path(sys.executable).with_name("churn")
            night = subprocess.run(
                [churn, "nightly", "--day", yesterday],
                env=os.environ | settings.as_env(),
                capture_output=True,
                text=True,
                timeout=600,
            )
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
        finally:
            open_store(settings).teardown()
