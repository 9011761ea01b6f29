"""`churn status` on a real small world after a night's scoring, with a real Redis: all
well exits 0; an unreachable Redis or a missing production model exits 40 and says so."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from typer.testing import CliRunner

from churn.cli import app
from churn.stages import STAGES, StageInputs
from churn.status import EXIT_CODES, gather_status, problems
from core.readiness import free_port
from feature_repo.store import open_store
from tests.integration.world import build_world
from training.promote import force
from training.train import train_models

pytestmark = pytest.mark.integration

END = datetime(2026, 3, 2, tzinfo=UTC)  # the world's data ends the day before
NIGHT = END.date() - timedelta(days=1)  # the night after the world's last day
MORNING = END + timedelta(hours=6)  # when the operator looks
runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory, isolated_settings):
    """A small world in Feast and Redis, a production model, and the night's batch and drift
    (the steps after the full build): the stage functions `churn nightly` runs, in-process."""
    settings = isolated_settings(
        tmp_path_factory.mktemp("status"), tuning_budget=1, horizon_days=7, validation_days=3
    )
    try:
        build_world(settings, users=200, days=60, end=END)
        trained = train_models(settings, now=END)
        force(settings, trained.versions[trained.best], "status test")
        inputs = StageInputs.night(settings, NIGHT)
        for name in ("batch", "drift"):
            STAGES[name].run(inputs)
        yield settings
    finally:
        open_store(settings).teardown()


def status_cli(settings, *args: str):
    return runner.invoke(app, ["status", "--now", f"{MORNING:%Y-%m-%dT%H:%M:%S}", *args],
                         env=settings.as_env())  # fmt: skip


def test_a_healthy_system_is_all_well_and_exits_0(world):
    status = gather_status(world, MORNING)
    if not status.redis.exact:  # the shared Redis holds over REDIS_KEY_SAMPLE keys of others'
        pytest.skip(f"the test Redis holds {status.redis.db_keys:,} keys: the count is sampled")
    assert problems(status, MORNING, world) == []
    assert status.layer("features").last == NIGHT
    assert status.layer("batches").last == END.date()
    assert status.night.day == NIGHT
    assert {s.name: s.state for s in status.night.steps}["batch"] == "done"
    assert status.redis.reachable and status.redis.project_keys == 200
    assert status.model.version is not None
    result = status_cli(world)
    assert result.exit_code == EXIT_CODES["ok"] == 0, result.output
    assert "all well" in result.output
    machine = status_cli(world, "--json")
    assert machine.exit_code == 0, machine.output
    assert json.loads(machine.output)["verdict"] == "ok"


def test_an_unreachable_redis_exits_40_naming_it_without_its_password(world):
    closed = world.model_copy(update={"redis_url": f"redis://:s3cret@127.0.0.1:{free_port()}/0"})
    found = problems(gather_status(closed, MORNING), MORNING, closed)
    assert [(p.severity, p.area) for p in found] == [("error", "redis")]
    result = status_cli(closed)
    assert result.exit_code == EXIT_CODES["error"] == 40, result.output
    assert "is not reachable" in result.output
    assert "s3cret" not in result.output


def test_no_production_model_exits_40_and_says_what_to_run(world, tmp_path):
    bare = world.model_copy(update={"artifacts_dir": tmp_path / "artifacts"})
    found = problems(gather_status(bare, MORNING), MORNING, bare)
    assert [(p.severity, p.area) for p in found] == [("error", "model")]
    assert "churn promote" in found[0].message
    result = status_cli(bare)
    assert result.exit_code == 40
    assert "no production model" in result.output


def test_a_night_missed_is_an_error_the_next_evening(world):
    evening = datetime.combine(date(2026, 3, 3), datetime.min.time(), UTC) + timedelta(hours=20)
    found = problems(gather_status(world, evening), evening, world)
    assert [(p.severity, p.area) for p in found] == [("error", "night")]
    assert "44 h old" in found[0].message
