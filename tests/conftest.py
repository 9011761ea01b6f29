"""Shared fixtures: isolated settings per test, a real Redis and a real PostgreSQL for
integration tests. Every test's settings come from ``settings_under``, through
``make_settings`` (a unit test's tmp dir) or ``isolated_settings`` (an integration test's
Redis keys and Feast project of its own)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import prometheus_client  # noqa: F401  (before Feast: see below)
import psycopg
import pytest

from core.redaction import redact
from core.settings import Settings, get_settings
from feature_repo.redis_server import RedisUnavailableError, ensure_redis

# prometheus_client picks its value store when imported: importing feast.metrics first sets
# PROMETHEUS_MULTIPROC_DIR, and every ApiMetrics of the process then shares the same
# counts. Imported here, the suite's in-process apps count on their own, whatever the order
# the tests run in (the servers the tests start keep their own multiprocess directory).

# The servers the suite runs against: kept from the developer's environment.
REDIS_URL_VARIABLE = "CHURN_REDIS_URL"
POSTGRES_URL_VARIABLE = "CHURN_TEST_POSTGRES_URL"
LOCAL_POSTGRES_URL = "postgresql://root@127.0.0.1:5432/postgres"


# The slowest integration modules, slowest first (make test's --durations): they start the run, so that
# under xdist (make test's two processes) no slow module is left to start last and run alone.
SLOW_FIRST = ("test_demo_dates", "test_nightly", "test_spark_parity", "test_demo",
              "test_dashboards", "test_outreach", "test_training", "test_monitoring_loop",
              "test_serving_night", "test_bootstrap", "test_api")  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}

    def key(item: pytest.Item) -> int:
        slow = item.path.parent.name == "integration"
        return rank.get(item.path.stem, len(rank)) if slow else len(rank)

    items.sort(key=key)  # stable: the others as found


@pytest.fixture(scope="session", autouse=True)
def _clean_environment() -> Iterator[None]:
    """Tests state their settings: a developer's CHURN_* variables must not change them.

    CHURN_REDIS_URL and CHURN_TEST_POSTGRES_URL stay: they name the servers of the machine.
    """
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("CHURN_") and key not in (REDIS_URL_VARIABLE, POSTGRES_URL_VARIABLE):
                patch.delenv(key)
        yield


# One configuration per model kind (its defaults): tuning is tested by the tests that tune,
# which ask for the product's budget (PRODUCT_TUNING_BUDGET); every other test trains once
# per kind instead of once per configuration and fold.
TEST_TUNING_BUDGET = 1
PRODUCT_TUNING_BUDGET = Settings.model_fields["tuning_budget"].default


def settings_under(tmp: Path, **overrides: object) -> Settings:
    """The suite's settings: data and artifacts under ``tmp``, the freshness gate off (the
    worlds are pinned in time), one tuning configuration per model kind; overrides on top."""
    values: dict[str, object] = {
        "data_dir": tmp / "data",
        "artifacts_dir": tmp / "artifacts",
        "max_event_age_hours": 0,
        "tuning_budget": TEST_TUNING_BUDGET,
    }
    return get_settings(**(values | overrides))


@pytest.fixture
def make_settings(tmp_path: Path):
    """``settings_under`` this test's tmp dir; keyword overrides on top."""

    def make(**overrides: object) -> Settings:
        return settings_under(tmp_path, **overrides)

    return make


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The configured Redis, or a private redis-server; fails the test run if neither."""
    base = get_settings(data_dir=tmp_path_factory.mktemp("redis"))
    try:
        return ensure_redis(base, say=lambda _: None).redis_url
    except RedisUnavailableError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def isolated_settings(redis_url: str):
    """Settings for an integration test: its own data dir, the test Redis, its own Feast project.

    A project of its own keeps its Redis keys apart; teardown removes only those.
    """

    def make(tmp: Path, **overrides: object) -> Settings:
        own = {"redis_url": redis_url, "feast_project": f"churntest_{uuid.uuid4().hex[:10]}"}
        return settings_under(tmp, **(own | overrides))

    return make


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL on which a test may create a database of its own (and drop only that):
    $CHURN_TEST_POSTGRES_URL, else the local one. Fails the test run if it does not answer."""
    url = os.environ.get(POSTGRES_URL_VARIABLE, LOCAL_POSTGRES_URL)
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"no PostgreSQL answers at {redact(url)}: set {POSTGRES_URL_VARIABLE} to one "
            f"on which the tests may create databases ({exc})"
        )
    return url


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """The libpq URL of a database made for this test on the test PostgreSQL, dropped after."""
    name = f"churntest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlsplit(postgres_url)._replace(path=f"/{name}").geturl()
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
