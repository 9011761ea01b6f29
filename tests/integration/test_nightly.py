"""`churn nightly` for real: every step as a process of its own, job metrics on a real
Pushgateway, the night's outputs on disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest

from batch.outputs import HIGH_RISK_FILE, batch_dir
from churn.nightly import FAILED_STEP
from core.contract import EVENT_COLUMNS, USER_COLUMNS, to_contract_table
from core.partitions import partition_dir
from core.settings import Settings
from feature_repo.feast_cli import apply_definitions
from feature_repo.store import open_store
from ingestion.generate import generate_demo_data
from ingestion.postgres_source import append_events, seed_portal
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features
from ingestion.sources import ingest_from_source
from ingestion.validate import run_validation
from monitor.jobs import FAILURE, SUCCESS
from tests.integration.test_push import pushed_samples, running_pushgateway
from tests.integration.world import TODAY, build_world, copy_world
from training.promote import force
from training.train import train_models

pytestmark = pytest.mark.integration

JOBS = ("features", "materialize", "batch", "estimate", "drift", "outcomes", "uplift", "skew",
        "retrain")  # fmt: skip
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


def test_the_night_runs_every_job_and_reports_each_run(tmp_path, isolated_settings, trained_world):
    with running_pushgateway(tmp_path) as gateway:
        settings = isolated_settings(tmp_path / "world", pushgateway_url=gateway)
        try:
            # The night re-validates and rebuilds yesterday, as it would after new data.
            trained = copy_world(trained_world, settings)
            force(settings, trained.versions[trained.best], "nightly test")
            yesterday = (TODAY - timedelta(days=1)).date().isoformat()
            night = churn_nightly(settings, yesterday)
            assert night.returncode == 0, night.stdout[-3000:] + night.stderr[-3000:]
            assert (batch_dir(settings.predictions_dir, TODAY.date()) / HIGH_RISK_FILE).exists()
            assert list(settings.drift_dir.glob("as_of=*.json"))
            assert settings.retrain_history_path.exists()
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
                "the night stops at features; not run: materialize, batch, estimate, drift, "
                "outcomes, uplift, skew, retrain" in output
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


def test_an_unattended_night_reads_what_is_new_at_the_portals_database(
    tmp_path, isolated_settings, database
):
    """The portal's PostgreSQL is the source: the backfill builds the tables through the day
    before yesterday, yesterday's events are committed at the source, and ``churn nightly``
    ingests them and scores; a second night finds nothing new and still completes."""
    with running_pushgateway(tmp_path) as gateway:
        settings = isolated_settings(tmp_path / "world", pushgateway_url=gateway,
                                     source=database, source_mark_column="inserted_at")  # fmt: skip
        day = (TODAY - timedelta(days=1)).date()
        data = generate_demo_data(n_users=300, days=120, seed=6, start=day - timedelta(days=119))
        users = to_contract_table(data.users, USER_COLUMNS)
        events = to_contract_table(data.events, EVENT_COLUMNS)
        late = pc.greater_equal(events["event_time"], TODAY - timedelta(days=1))
        try:
            seed_portal(settings, database, users, events.filter(pc.invert(late)))
            backfill = ingest_from_source(settings)
            assert backfill.events == events.num_rows - pc.sum(late).as_py()
            assert run_validation(settings).passed
            build_user_daily(settings, now=TODAY - timedelta(days=1))
            build_rolling_features(settings)
            apply_definitions(settings)
            trained = train_models(settings, now=TODAY - timedelta(days=1))
            force(settings, trained.versions[trained.best], "nightly source test")
            append_events(settings, database, events.filter(late), TODAY)

            night = churn_nightly(settings, day.isoformat())

            assert night.returncode == 0, night.stdout[-3000:] + night.stderr[-3000:]
            assert "→ churn data ingest" in night.stdout
            ingest = pushed_samples(gateway, "churn_ingest")
            assert ingest[("churn_ingest_events_new", ())] == pc.sum(late).as_py() > 0
            assert partition_dir(settings.features_path, day).is_dir()
            assert (batch_dir(settings.predictions_dir, TODAY.date()) / HIGH_RISK_FILE).exists()

            again = churn_nightly(settings, day.isoformat())

            assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
            assert "nothing new" in again.stdout
            assert pushed_samples(gateway, "churn_ingest")[("churn_ingest_events_new", ())] == 0
        finally:
            open_store(settings).teardown()
