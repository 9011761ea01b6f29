"""The whole foundation path with real components: DuckDB, Feast, a real Redis.

generate → validate → prepare → features → feast apply → materialize, then the
online store, the offline point-in-time join and the plain ``feast`` CLI are
checked against the feature table itself.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest
import redis

from core import partitions
from core.settings import Settings
from feature_repo.feast_cli import FeastCommandError, apply_definitions, feast_cli
from feature_repo.service_name import FEATURE_SERVICE
from feature_repo.spec import FEATURE_VIEW, feature_names
from feature_repo.store import materialize, open_store
from ingestion.generate import generate_demo_data, write_demo_data
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features
from ingestion.validate import run_validation

pytestmark = pytest.mark.integration

START = date(2026, 1, 1)
DAYS = 60


def _build(settings: Settings, users: int = 300) -> None:
    write_demo_data(generate_demo_data(n_users=users, days=DAYS, seed=11, start=START), settings)
    report = run_validation(settings, now=datetime(2026, 3, 2, tzinfo=UTC))
    assert report.passed, report.failures
    build_user_daily(settings)
    build_rolling_features(settings)
    apply_definitions(settings)


def _offline(settings: Settings) -> pd.DataFrame:
    glob = partitions.table_glob(settings.features_path)
    return duckdb.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true)").df()


def _project_keys(settings: Settings) -> list[bytes]:
    client = redis.Redis.from_url(settings.redis_url)
    return list(client.scan_iter(match=b"*" + settings.feast_project.encode(), count=1000))


@pytest.fixture(scope="module")
def store_settings(tmp_path_factory, isolated_settings):
    settings = isolated_settings(tmp_path_factory.mktemp("store"))
    _build(settings)
    end = datetime.combine(START + timedelta(days=DAYS), datetime.min.time(), UTC)
    materialize(settings, start=end - timedelta(days=settings.feature_ttl_days), end=end)
    yield settings
    open_store(settings).teardown()  # deletes this project's keys only
    assert _project_keys(settings) == []


def test_online_features_equal_newest_offline_row(store_settings):
    offline = _offline(store_settings)
    newest = offline.sort_values("event_timestamp").groupby("user_id").tail(1).set_index("user_id")
    sample = sorted(np.random.default_rng(0).choice(newest.index, size=60, replace=False))
    store = open_store(store_settings)
    online = (
        store.get_online_features(
            features=store.get_feature_service(FEATURE_SERVICE),
            entity_rows=[{"user_id": u} for u in sample],
        )
        .to_df()
        .set_index("user_id")
    )
    names = feature_names(store_settings.windows)
    assert sorted(online.columns) == sorted(names)  # Feast does not keep the schema order
    expected = newest.loc[sample, names]
    for name in names:
        got, want = online[name].to_numpy(), expected[name].to_numpy()
        if expected[name].dtype.kind == "f" or expected[name].isna().any():
            # Floats, and integers with nulls (never paid: no days since the last payment).
            np.testing.assert_allclose(
                got.astype(float), want.astype(float), rtol=0, atol=1e-9, err_msg=name
            )
        else:
            assert got.tolist() == want.tolist(), name


def test_every_user_of_the_last_day_is_online(store_settings):
    offline = _offline(store_settings)
    last = offline[offline.date == offline.date.max()].user_id.tolist()
    store = open_store(store_settings)
    rows = store.get_online_features(
        features=[f"{FEATURE_VIEW}:tenure_days"], entity_rows=[{"user_id": u} for u in last]
    ).to_dict()
    assert all(v is not None for v in rows["tenure_days"])
    keys = _project_keys(store_settings)
    assert len(keys) == len(last)


def test_unknown_user_has_no_online_features(store_settings):
    store = open_store(store_settings)
    rows = store.get_online_features(
        features=store.get_feature_service(FEATURE_SERVICE),
        entity_rows=[{"user_id": "no-such-user"}],
    ).to_dict()
    assert rows["logins_7d"] == [None]


def test_point_in_time_join_takes_the_latest_row_at_or_before_t(store_settings):
    offline = _offline(store_settings)
    rng = np.random.default_rng(1)
    users = rng.choice(offline.user_id.unique(), size=40, replace=False)
    hours = rng.integers(24 * 10, 24 * DAYS, size=40)
    entity = pd.DataFrame(
        {
            "user_id": users,
            "event_timestamp": pd.Timestamp(START, tz="UTC") + pd.to_timedelta(hours, unit="h"),
        }
    )
    store = open_store(store_settings)
    joined = store.get_historical_features(
        entity_df=entity, features=store.get_feature_service(FEATURE_SERVICE)
    ).to_df()
    stamps = offline.event_timestamp.dt.tz_convert("UTC")
    checked = 0
    for row in joined.itertuples(index=False):
        t = row.event_timestamp
        candidates = offline[(offline.user_id == row.user_id) & (stamps <= t)]
        candidates = candidates[
            candidates.event_timestamp.dt.tz_convert("UTC")
            > t - pd.Timedelta(days=store_settings.feature_ttl_days)
        ]
        if candidates.empty:
            assert pd.isna(row.tenure_days), "a row outside the TTL must not be joined"
            continue
        want = candidates.sort_values("event_timestamp").iloc[-1]
        assert row.tenure_days == want.tenure_days
        assert row.logins_30d == want.logins_30d
        assert row.days_since_last_activity == want.days_since_last_activity
        checked += 1
    assert checked >= 30


def test_plain_feast_cli_lists_the_views(store_settings):
    views = feast_cli(store_settings, "feature-views", "list").stdout
    services = feast_cli(store_settings, "feature-services", "list").stdout
    assert FEATURE_VIEW in views
    assert FEATURE_SERVICE in services


def test_changing_windows_changes_sql_and_feast_schema(tmp_path, isolated_settings):
    settings = isolated_settings(tmp_path, windows=(30, 60, 90))
    _build(settings, users=80)
    try:
        view = open_store(settings).get_feature_view(FEATURE_VIEW)
        names = [f.name for f in view.features]
        assert names == feature_names((30, 60, 90))
        assert "logins_90d" in names and "logins_7d" not in names
        assert "logins_90d" in _offline(settings).columns
    finally:
        open_store(settings).teardown()


def test_a_refused_apply_is_an_error_with_what_feast_printed(tmp_path, isolated_settings):
    settings = isolated_settings(tmp_path, feast_project="_leading_underscore")
    with pytest.raises(FeastCommandError, match="feast plan && feast apply failed") as error:
        apply_definitions(settings)
    assert "Project name, _leading_underscore, should only have" in str(error.value)
    assert not settings.registry_path.exists()  # the plan failed: nothing was applied
