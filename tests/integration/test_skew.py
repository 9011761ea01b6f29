"""Online/offline skew on real Redis + Feast, read through the API's own feature source:
zero after a correct materialize, one corrupted cell (written through Feast's own online
write path) found exactly, and a wrong decoder in the source found cell by cell.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

from churn.cli import app
from core import partitions
from feature_repo.spec import ENTITY_KEY, FEATURE_VIEW, TIMESTAMP_FIELD, feature_names
from feature_repo.store import materialize, open_store
from monitor import skew
from monitor.skew import (
    TOLERANCE,
    FeatureSkew,
    print_skew,
    skew_report,
    skew_samples,
    write_skew_report,
)
from online_api.online_features import FeatureRow, OnlineFeatures, Plan
from served import registry
from served.population import POPULATION_FEATURES
from tests.integration.world import TODAY, copy_world
from training.dataset import FEATURE_SERVICE

pytestmark = pytest.mark.integration

# The shared world's end. Skew compares values and reads no clock (no TTL against now), and
# the world is the same data whatever the date, shifted: the same expected counts any day.
END = TODAY
CORRUPTED = "watch_minutes_7d"
RATIO = "watch_minutes_per_day_lifetime"  # a float64 ratio: rarely exact in float32


@pytest.fixture(scope="module")
def skew_settings(tmp_path_factory, isolated_settings, trained_world):
    settings = isolated_settings(tmp_path_factory.mktemp("skew"), skew_sample=1000)
    try:
        copy_world(trained_world, settings)
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


class MisdecodingSource:
    """The API's real feature source with a decoding bug: ``wrong`` applied to each value
    served of ``features`` (all when None). Records each fetch's size and each close."""

    def __init__(
        self, settings, wrong: Callable[[object], object], features: Sequence[str] | None = None
    ) -> None:
        self.real = OnlineFeatures(settings)
        self.wrong, self.features = wrong, features
        self.fetched: list[int] = []
        self.closed = 0

    def plan(self, feature_service: str, refs: list[str], also: Sequence[str] = ()) -> Plan:
        return self.real.plan(feature_service, refs, also)

    async def fetch(self, user_ids: list[str], plan: Plan) -> list[FeatureRow | None]:
        self.fetched.append(len(user_ids))
        rows = await self.real.fetch(user_ids, plan)
        return [None if row is None else FeatureRow(self._decode(row.values), row.as_of)
                for row in rows]  # fmt: skip

    def _decode(self, values: dict[str, object]) -> dict[str, object]:
        return {
            n: self.wrong(v) if self.features is None or n in self.features else v
            for n, v in values.items()
        }

    async def aclose(self) -> None:
        self.closed += 1
        await self.real.aclose()


def _as_float32(value: object) -> object:
    return None if value is None else float(np.float32(value))


def _none_as_zero(value: object) -> object:
    return 0 if value is None else value


def test_the_source_is_read_in_api_sized_batches_closed_and_reusable(skew_settings):
    population = len(_newest_rows(skew_settings))
    small_batches = skew_settings.model_copy(update={"api_batch_max": 64})
    source = MisdecodingSource(small_batches, lambda value: value)  # decodes correctly
    first = skew_report(small_batches, source=source)
    assert first.cells_mismatched == 0 and first.users_missing_online == 0
    full, rest = divmod(population, 64)
    assert source.fetched == [64] * full + ([rest] if rest else [])
    assert source.closed == 1
    # Closed with the report's event loop, the source serves the next report's loop too.
    assert skew_report(small_batches, source=source).cells_mismatched == 0
    assert source.closed == 2


def test_a_float_decoded_as_float32_is_skew(skew_settings):
    newest = _newest_rows(skew_settings)
    offline = newest[RATIO].dropna()
    rounded = offline.map(_as_float32)
    # float32 is off by up to ~6e-8 relative: over the 1e-9 tolerance unless the value is small.
    scale = np.maximum(1.0, np.maximum(offline.abs(), rounded.abs()))
    wrong = offline[(rounded - offline).abs() > TOLERANCE * scale]
    assert len(wrong) > 0, "the world has no float that float32 cannot hold"
    report = skew_report(
        skew_settings, source=MisdecodingSource(skew_settings, _as_float32, [RATIO])
    )
    assert report.cells_mismatched == len(wrong)
    assert report.users_with_mismatch == len(wrong) and report.users_missing_online == 0
    user = sorted(wrong.index)[0]
    assert report.worst_features == [
        FeatureSkew(RATIO, len(wrong), user, float(offline[user]), rounded[user])
    ]


def test_a_missing_value_decoded_as_zero_is_skew(skew_settings):
    names = feature_names(skew_settings.windows)
    nulls = _newest_rows(skew_settings)[names].isna()
    assert nulls.to_numpy().sum() > 0, "the world has no missing feature value"
    report = skew_report(skew_settings, source=MisdecodingSource(skew_settings, _none_as_zero))
    assert report.cells_mismatched == int(nulls.to_numpy().sum())
    assert report.users_with_mismatch == int(nulls.any(axis=1).sum())
    counts = nulls.sum()
    worst = report.worst_features[0]
    assert worst.mismatches == counts.max() and counts[worst.feature] == counts.max()
    assert worst.offline_value is None and worst.online_value == 0


def test_the_cli_exits_3_on_a_wrong_decoder_and_0_on_the_apis(skew_settings, monkeypatch):
    env = skew_settings.as_env()
    clean = CliRunner().invoke(app, ["monitor", "skew"], env=env)
    assert clean.exit_code == 0, clean.output
    assert "Online/offline skew: 0 of" in clean.output
    # The command builds the API's source itself: make that one decode a float wrongly.
    monkeypatch.setattr(
        skew, "OnlineFeatures", lambda settings: MisdecodingSource(settings, _as_float32, [RATIO])
    )
    wrong = CliRunner().invoke(app, ["monitor", "skew"], env=env)
    assert wrong.exit_code == 3, wrong.output
    reports = (skew_settings.monitoring_dir / "skew").glob("skew_*.json")
    written = json.loads(max(reports, key=lambda path: path.stat().st_mtime_ns).read_text())
    assert written["cells_mismatched"] > 0
    assert written["worst_features"][0]["feature"] == RATIO


def test_the_production_models_features_are_the_ones_compared(skew_settings, tmp_path):
    """The API reads the production model's refs plus the population rule's features, and
    refuses a model whose refs its feature service does not serve: so does the check."""
    settings = skew_settings.model_copy(update={"artifacts_dir": tmp_path / "artifacts"})
    models = settings.models_dir
    refs = [f"{FEATURE_VIEW}:logins_7d", f"{FEATURE_VIEW}:{RATIO}"]
    for version, model_refs in (("v1", refs), ("v2", [*refs, f"{FEATURE_VIEW}:no_such"])):
        metadata = {"feature_service": FEATURE_SERVICE, "feature_refs": model_refs,
                    "model_kind": "stand-in", "created_at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
        registry.save_model(models, version, {"stand-in": True}, metadata)
    registry.set_production(models, "v1", reason="test")
    population = len(_newest_rows(skew_settings))
    compared = {ref.split(":", 1)[1] for ref in [*refs, *POPULATION_FEATURES]}

    report = skew_report(settings)
    assert report.feature_service == FEATURE_SERVICE
    assert report.features_compared == len(compared) == 4
    assert report.cells_compared == population * len(compared)
    assert report.cells_mismatched == 0

    registry.set_production(models, "v2", reason="test")
    with pytest.raises(ValueError, match="no_such"):
        skew_report(settings)
