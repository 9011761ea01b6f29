"""The Feast SQL registry option on a real PostgreSQL, in a database of the test's own.

Feast's SqlRegistry.teardown empties every registry table of its database, for all
projects, so the test creates a database for itself and drops it afterwards.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from feature_repo.spec import FEATURE_VIEW
from feature_repo.store import apply_definitions, materialize, open_store
from ingestion.features import build_rolling_features
from ingestion.generate import generate_demo_data, write_demo_data
from ingestion.prepare import build_user_daily
from ingestion.validate import run_validation

pytestmark = pytest.mark.integration

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def database():
    try:
        admin = psycopg.connect(ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {ADMIN}: {exc}")
    name = f"churntest_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def test_apply_and_serve_with_the_sql_registry(tmp_path, isolated_settings, database):
    settings = isolated_settings(tmp_path, feast_registry_url=database)
    start = date(2026, 1, 1)
    write_demo_data(generate_demo_data(n_users=60, days=30, seed=2, start=start), settings)
    assert run_validation(settings).passed
    build_user_daily(settings)
    build_rolling_features(settings)
    apply_definitions(settings)
    try:
        assert not settings.registry_path.exists()  # nothing went to the file registry
        with psycopg.connect(database.replace("+psycopg", "")) as conn:
            names = conn.execute(
                "SELECT feature_view_name FROM feature_views WHERE project_id = %s",
                (settings.feast_project,),
            ).fetchall()
        assert names == [(FEATURE_VIEW,)]
        end = datetime.combine(start + timedelta(days=30), datetime.min.time(), UTC)
        materialize(settings, end=end)
        store = open_store(settings)
        users = sorted(generate_demo_data(n_users=60, days=30, seed=2, start=start).users.user_id)[
            :5
        ]
        online = store.get_online_features(
            features=store.get_feature_service("churn_model_v1"),
            entity_rows=[{"user_id": u} for u in users],
        ).to_dict()
        assert all(v is not None for v in online["tenure_days"])
    finally:
        open_store(settings).teardown()
