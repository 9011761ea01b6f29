"""Online/offline skew on real Redis + Feast: zero after a correct materialize, and one
corrupted cell (written through Feast's own online write path) found exactly.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from core import partitions
from feature_repo.spec import ENTITY_KEY, FEATURE_VIEW, TIMESTAMP_FIELD, feature_names
from feature_repo.store import materialize, open_store
from monitor.skew import (
    FeatureSkew,
    print_skew,
    skew_report,
    skew_samples,
    write_skew_report,
)
from tests.integration.world import build_world

pytestmark = pytest.mark.integration

DAYS = 45
# Ending today, as a nightly run does: the rows materialized are the ones being served.
END = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC)
START = END.date() - timedelta(days=DAYS)
CORRUPTED = "watch_minutes_7d"


@pytest.fixture(scope="module")
def skew_settings(tmp_path_factory, isolated_settings):
    settings = isolated_settings(tmp_path_factory.mktemp("skew"), skew_sample=1000)
    try:
        build_world(settings, users=300, days=DAYS, end=END)
        yield settings
    finally:
        if settings.registry_path.exists():
            open_store(settings).teardown()


def _registered_ttl(settings) -> timedelta:
    return open_store(settings).get_feature_view(FEATURE_VIEW).ttl


def _newest_rows(settings) -> pd.DataFrame:
    """Each user's newest offline row within the registered TTL of the table's newest stamp,
    by hand."""
    glob = partitions.table_glob(settings.features_path)
    frame = duckdb.execute(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = false)").df()
    newest = frame[TIMESTAMP_FIELD].max()
    recent = frame[frame[TIMESTAMP_FIELD] >= newest - _registered_ttl(settings)]
    return recent.sort_values(TIMESTAMP_FIELD).groupby(ENTITY_KEY).tail(1).set_index(ENTITY_KEY)


def test_a_correct_materialize_has_no_skew(skew_settings):
    expected_users = len(_newest_rows(skew_settings))
    features = len(feature_names(skew_settings.windows))
    report = skew_report(skew_settings)
    assert report.population == expected_users
    assert report.users_compared == expected_users  # the sample (1000) exceeds the population
    assert report.features_compared == features
    assert report.cells_compared == expected_users * features
    assert report.cells_mismatched == 0 and report.mismatch_ratio == 0
    assert report.users_missing_online == 0 and report.users_with_mismatch == 0
    assert report.worst_features == [] and report.missing_examples == []
    assert report.newest_offline == END


def test_sample_sizes(skew_settings):
    population = len(_newest_rows(skew_settings))
    assert skew_report(skew_settings, sample=100_000).users_compared == population
    small = skew_report(skew_settings, sample=40, seed=3)
    assert small.users_compared == 40 and small.population == population
    assert small.cells_compared == 40 * small.features_compared
    with pytest.raises(ValueError, match="at least 1 user"):
        skew_report(skew_settings, sample=0)


def test_one_corrupted_cell_is_found_exactly(skew_settings, tmp_path):
    newest = _newest_rows(skew_settings)
    user = sorted(newest.index)[len(newest) // 2]
    row = newest.loc[[user]].reset_index()
    original = float(row.at[0, CORRUPTED])
    row.at[0, CORRUPTED] = original + 12.5
    store = open_store(skew_settings)
    try:
        store.write_to_online_store(
            FEATURE_VIEW, row[[ENTITY_KEY, TIMESTAMP_FIELD, *feature_names(skew_settings.windows)]]
        )
        served = store.get_online_features(
            features=[f"{FEATURE_VIEW}:{CORRUPTED}"], entity_rows=[{ENTITY_KEY: user}]
        ).to_dict()
        assert served[CORRUPTED] == [original + 12.5]  # Feast accepted the write

        report = skew_report(skew_settings)
        assert report.cells_mismatched == 1
        assert report.mismatch_ratio == 1 / report.cells_compared
        assert report.users_with_mismatch == 1 and report.users_missing_online == 0
        assert report.worst_features == [FeatureSkew(CORRUPTED, 1, user, original, original + 12.5)]

        path = write_skew_report(report, skew_settings)
        assert path.parent == skew_settings.monitoring_dir / "skew"
        saved = json.loads(path.read_text())
        assert saved["mismatch_ratio"] == report.mismatch_ratio
        assert saved["worst_features"][0]["example_user"] == user

        console = Console(record=True, width=200)
        print_skew(report, console)
        text = console.export_text()
        assert f"1 of {report.cells_compared} cells differ" in text
        assert CORRUPTED in text and user in text

        samples = {s.name: s.value for s in skew_samples(report)}
        assert samples == {
            "churn_online_offline_mismatch_ratio": 1 / report.cells_compared,
            "churn_online_offline_users_missing": 0.0,
        }
    finally:
        materialize(skew_settings, end=END)  # the other tests expect a clean store
    assert skew_report(skew_settings).cells_mismatched == 0


def _add_row(settings, row: pd.DataFrame, user: str, stamp: datetime, name: str):
    """A copy of ``row`` for ``user`` stamped ``stamp``, in the partition of its day."""
    row = row.assign(**{ENTITY_KEY: user, TIMESTAMP_FIELD: stamp})
    path = partitions.partition_dir(settings.features_path, (stamp - timedelta(days=1)).date())
    pq.write_table(pa.Table.from_pandas(row, preserve_index=False), path / f"{name}.parquet")
    return path / f"{name}.parquet"


def test_users_missing_online_are_counted_and_mismatching(skew_settings):
    newest = _newest_rows(skew_settings)
    row = newest.iloc[[0]].reset_index()
    ttl = _registered_ttl(skew_settings)
    # Offline rows added after the last materialize: one current (so missing online),
    # one older than the TTL (expired online too, so not part of the question).
    added = [
        _add_row(skew_settings, row, "u_not_online", END, "ghost"),
        _add_row(skew_settings, row, "u_expired", END - ttl - timedelta(days=1), "expired"),
    ]
    try:
        report = skew_report(skew_settings)
        assert report.population == len(newest) + 1
        assert report.users_missing_online == 1
        assert report.missing_examples == ["u_not_online"]
        assert report.users_with_mismatch == 1
        # Every cell the table has a value for is wrong online.
        names = feature_names(skew_settings.windows)
        assert report.cells_mismatched == int(row[names].notna().sum(axis=1)[0])
        assert {s.name: s.value for s in skew_samples(report)}[
            "churn_online_offline_users_missing"
        ] == 1.0
    finally:
        for path in added:
            path.unlink()


def test_the_ttl_is_the_registered_views_not_the_settings(skew_settings):
    """A TTL setting changed since ``feast apply`` does not change the question: Feast's
    join still serves what the registered view's TTL keeps, so the check covers that."""
    ttl = _registered_ttl(skew_settings)
    assert ttl == timedelta(days=skew_settings.feature_ttl_days) > timedelta(days=1)
    newest = _newest_rows(skew_settings)
    row = newest.iloc[[0]].reset_index()
    # Within the registered TTL, older than the changed setting's one day; not online.
    added = _add_row(skew_settings, row, "u_two_days_old", END - timedelta(days=2), "two_days")
    moved_on = skew_settings.model_copy(update={"feature_ttl_days": 1})
    try:
        report = skew_report(moved_on)
        assert report.population == len(newest) + 1
        assert report.missing_examples == ["u_two_days_old"]
    finally:
        added.unlink()
