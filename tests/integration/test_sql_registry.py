"""The Feast SQL registry option on a real PostgreSQL, in a database of the test's own.

Feast's SqlRegistry.teardown empties every registry table of its database, for all
projects, so the test creates a database for itself and drops it afterwards.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import psycopg
import pytest

from feature_repo.feast_cli import apply_definitions
from feature_repo.service_name import FEATURE_SERVICE
from feature_repo.spec import FEATURE_VIEW
from feature_repo.store import materialize, open_store
from ingestion.generate import generate_demo_data, write_demo_data
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features
from ingestion.validate import run_validation

pytestmark = pytest.mark.integration


def test_apply_and_serve_with_the_sql_registry(tmp_path, isolated_settings, database):
    # SQLAlchemy's URL names the driver.
    registry_url = urlsplit(database)._replace(scheme="postgresql+psycopg").geturl()
    settings = isolated_settings(tmp_path, feast_registry_url=registry_url)
    start = date(2026, 1, 1)
    write_demo_data(generate_demo_data(n_users=60, days=30, seed=2, start=start), settings)
    assert run_validation(settings).passed
    build_user_daily(settings)
    build_rolling_features(settings)
    apply_definitions(settings)
    try:
        assert not settings.registry_path.exists()  # nothing went to the file registry
        with psycopg.connect(database) as conn:
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
            features=store.get_feature_service(FEATURE_SERVICE),
            entity_rows=[{"user_id": u} for u in users],
        ).to_dict()
        assert all(v is not None for v in online["tenure_days"])
    finally:
        open_store(settings).teardown()
