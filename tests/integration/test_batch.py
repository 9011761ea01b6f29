"""The nightly batch on real Feast + Redis: scores, files, skipped users, reruns, failures."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from batch.export import LATEST_FILE, MANIFEST_FILE
from batch.high_risk import HIGH_RISK_COLUMNS
from batch.job import score_population
from batch.outputs import (
    FEATURES_FILE,
    HIGH_RISK_FILE,
    PREDICTION_COLUMNS,
    PREDICTIONS_FILE,
    RUN_FILE,
    batch_dir,
)
from churn.cli import app
from core import partitions
from core.atomic import write_parquet
from core.sql_engine import DuckEngine
from core.tables import USER_DAILY, register_table, validated_event_files
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from feature_repo.store import open_store
from served import registry
from served.population import population_sql
from served.registry import RegistryError
from served.risk_bands import risk_bands
from tests.integration.test_push import pushed_samples, running_pushgateway
from tests.integration.world import TODAY, copy_world
from training.dataset import point_in_time_join
from training.labels import AsOfRange, labels_sql
from training.promote import force

pytestmark = pytest.mark.integration

END = TODAY  # the shared world's end
TTL = timedelta(days=3)


def _user_daily(settings) -> DuckEngine:
    engine = DuckEngine(settings)
    days = partitions.partition_days(settings.user_daily_path)
    register_table(engine, USER_DAILY, settings.user_daily_path, days)
    return engine


def _population(settings) -> list[str]:
    sql = population_sql(END.date(), settings.active_lookback_days)
    return [r[0] for r in _user_daily(settings).rows(sql)]


def _drop_feature_rows(settings, users: list[str], stamps: list[datetime]) -> None:
    """Delete ``users``' feature rows stamped at ``stamps`` (day D's row is stamped D+1)."""
    for stamp in stamps:
        folder = partitions.partition_dir(
            settings.features_path, (stamp - timedelta(days=1)).date()
        )
        for path in sorted(folder.glob("*.parquet")):
            table = pq.read_table(path)
            keep = ~table.to_pandas()[ENTITY_KEY].isin(users).to_numpy()
            write_parquet(table.filter(keep), path)


@pytest.fixture(scope="module")
def world(tmp_path_factory, isolated_settings, trained_world):
    """The shared world (offline) and its trained models (not promoted); some users' newest
    feature rows removed.

    ``edge``: rows stamped T, T-1 d, T-2 d removed, so its newest is at T - TTL exactly,
    which Feast still serves. ``gone``: every row within the TTL removed: skipped.
    """
    settings = isolated_settings(tmp_path_factory.mktemp("batch"))
    try:
        trained = copy_world(trained_world, settings, online=False)
        active = _population(settings)
        edge, gone = active[0], active[5:8]
        _drop_feature_rows(settings, [edge, *gone], [END - timedelta(days=d) for d in range(3)])
        _drop_feature_rows(settings, gone, [END - TTL])
        yield settings, trained, edge, gone
    finally:
        open_store(settings).teardown()


@pytest.fixture(scope="module")
def scored(world):
    """The production model set, then one run at T = END, with its progress calls."""
    settings, trained, edge, gone = world
    force(settings, trained.versions[trained.best], "batch test")
    calls: list[tuple[int, int]] = []
    result = score_population(settings, as_of=END, progress=lambda d, t: calls.append((d, t)))
    return settings, result, calls, edge, gone


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _no_staging_left(settings) -> None:
    leftovers = [p.name for p in settings.data_dir.iterdir() if p.name.startswith(".as_of=")]
    leftovers += [p.name for p in settings.predictions_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_no_production_model_is_a_clear_error(world):
    settings, *_ = world
    assert registry.production(settings.models_dir) is None
    with pytest.raises(RegistryError, match=r"no production model .*churn promote"):
        score_population(settings, as_of=END)
    assert not batch_dir(settings.predictions_dir, END.date()).exists()


def test_scores_equal_the_model_on_the_offline_join(scored):
    settings, result, calls, _edge, gone = scored
    version = registry.production(settings.models_dir)
    model, metadata = registry.load_model(settings.models_dir, version)
    refs = metadata["feature_refs"]
    names = [r.split(":", 1)[1] for r in refs]
    active = _population(settings)
    entity = pd.DataFrame({ENTITY_KEY: active, TIMESTAMP_FIELD: pd.Timestamp(END)})
    joined = point_in_time_join(open_store(settings), entity, refs)
    joined = joined[joined[names].notna().any(axis=1)].set_index(ENTITY_KEY)
    expected = pd.Series(model.predict_proba(joined[names])[:, 1], index=joined.index)

    predictions = pd.read_parquet(result.output_dir / PREDICTIONS_FILE)
    assert predictions.columns.tolist() == PREDICTION_COLUMNS
    assert len(predictions) == result.scored == len(expected) == len(active) - len(gone)
    got = predictions.set_index(ENTITY_KEY)["churn_risk"]
    np.testing.assert_allclose(got.loc[expected.index], expected, rtol=0, atol=1e-9)
    assert set(gone).isdisjoint(got.index)
    assert predictions["rank"].tolist() == list(range(1, len(predictions) + 1))
    assert predictions["churn_risk"].is_monotonic_decreasing
    assert (
        predictions["risk_band"] == risk_bands(predictions["churn_risk"].to_numpy(), settings)
    ).all()
    assert (predictions["model_version"] == version).all()
    assert calls[0] == (0, 1) and calls[-1] == (1, 1)


def test_features_file_is_what_the_model_scored(scored):
    settings, result, *_ = scored
    model, metadata = registry.load_model(settings.models_dir, result.model_version)
    names = [r.split(":", 1)[1] for r in metadata["feature_refs"]]
    features = pd.read_parquet(result.output_dir / FEATURES_FILE)
    assert features.columns.tolist() == [ENTITY_KEY, *names]
    predictions = pd.read_parquet(result.output_dir / PREDICTIONS_FILE).set_index(ENTITY_KEY)
    rescored = model.predict_proba(features[names])[:, 1]
    np.testing.assert_allclose(
        rescored, predictions.loc[features[ENTITY_KEY], "churn_risk"], rtol=0, atol=1e-9
    )


def test_features_as_of_is_the_row_feast_used(scored):
    settings, result, _, edge, _ = scored
    glob = partitions.table_glob(settings.features_path)
    rows = duckdb.execute(f"SELECT * FROM read_parquet('{glob}')").df()
    rows[TIMESTAMP_FIELD] = pd.to_datetime(rows[TIMESTAMP_FIELD], utc=True)
    visible = rows[(rows[TIMESTAMP_FIELD] <= END) & (rows[TIMESTAMP_FIELD] >= END - TTL)]
    newest = visible.sort_values(TIMESTAMP_FIELD).groupby(ENTITY_KEY).tail(1).set_index(ENTITY_KEY)
    predictions = pd.read_parquet(result.output_dir / PREDICTIONS_FILE).set_index(ENTITY_KEY)
    stamps = predictions["features_as_of"]
    assert str(stamps.dtype) == "datetime64[us, UTC]"
    assert stamps[edge] == END - TTL  # the TTL bound: still served, and said so
    assert (stamps.drop(edge) == END).all()  # everyone else: yesterday's row
    assert (stamps == newest.loc[stamps.index, TIMESTAMP_FIELD]).all()
    # The values scored are that row's values.
    features = pd.read_parquet(result.output_dir / FEATURES_FILE).set_index(ENTITY_KEY)
    pd.testing.assert_frame_equal(
        features, newest.loc[features.index, features.columns], check_dtype=False, check_names=False
    )


def test_users_without_features_are_counted_not_scored(scored):
    settings, result, _, _, gone = scored
    assert result.population == len(_population(settings))
    assert result.skipped == len(gone)
    assert result.skipped_examples == sorted(gone)
    assert result.scored + result.skipped == result.population


def test_population_is_the_training_population_at_t(scored):
    settings, result, *_ = scored
    day = END.date()
    sql = labels_sql(AsOfRange(day, day, 1), settings.active_lookback_days, settings.horizon_days)
    labelled = _user_daily(settings).frame(sql)
    assert sorted(labelled[ENTITY_KEY]) == _population(settings)
    assert result.population == len(labelled) > 150


def test_high_risk_list_with_revenue(scored):
    settings, result, *_ = scored
    predictions = pd.read_parquet(result.output_dir / PREDICTIONS_FILE)
    listed = pd.read_csv(result.output_dir / HIGH_RISK_FILE)
    assert listed.columns.tolist() == HIGH_RISK_COLUMNS
    wanted = predictions[
        (predictions["rank"] <= settings.top_k) | (predictions["risk_band"] == "high")
    ]
    assert listed[ENTITY_KEY].tolist() == wanted[ENTITY_KEY].tolist()
    assert len(listed) == result.high_risk >= settings.top_k
    np.testing.assert_allclose(listed["churn_risk"], wanted["churn_risk"], rtol=1e-12)

    users = pd.read_parquet(settings.validated_users_path).set_index(ENTITY_KEY)
    events = pd.concat(pd.read_parquet(f) for f in validated_event_files(settings))
    paid = events[
        (events["event_type"] == "payment_success")
        & (events["event_time"] >= END - timedelta(days=90))
        & (events["event_time"] < END)
    ]
    monthly = (paid.groupby(ENTITY_KEY)["amount"].sum() / 3).round(2)
    rows = listed.set_index(ENTITY_KEY)
    assert (rows["plan"] == users.loc[rows.index, "plan"]).all()
    np.testing.assert_allclose(rows["monthly_revenue"], monthly.reindex(rows.index).fillna(0.0))
    free = rows["plan"] == "free"
    assert (rows.loc[free, "expected_revenue_at_risk"] == 0).all()
    np.testing.assert_allclose(
        rows.loc[~free, "expected_revenue_at_risk"],
        (rows.loc[~free, "churn_risk"] * rows.loc[~free, "monthly_revenue"]).round(2),
    )
    assert (rows.loc[~free, "monthly_revenue"] > 0).any()  # the data has paying users at risk


def test_run_json(scored):
    settings, result, *_ = scored
    record = json.loads((result.output_dir / RUN_FILE).read_text())
    assert record == result.run_record()
    assert record["as_of"] == END.isoformat()
    assert record["model_version"] == registry.production(settings.models_dir)
    assert set(record["score_quantiles"]) == {"p50", "p90", "p99"}
    q = record["score_quantiles"]
    assert 0 < q["p50"] <= q["p90"] <= q["p99"] < 1
    assert record["duration_s"] > 0
    assert record["started_at"] < record["finished_at"]
    assert sum(record["bands"].values()) == record["scored"]
    assert sorted(p.name for p in result.output_dir.iterdir()) == sorted(
        [PREDICTIONS_FILE, FEATURES_FILE, HIGH_RISK_FILE, RUN_FILE]
    )


def test_rerun_replaces_the_days_output(scored):
    settings, first, *_ = scored
    folder = first.output_dir
    (folder / "stale.txt").write_text("from an older run")
    second = score_population(settings.model_copy(update={"top_k": 3}), as_of=END)
    assert second.output_dir == folder
    assert not (folder / "stale.txt").exists()
    assert (
        json.loads((folder / RUN_FILE).read_text())["started_at"] == second.started_at.isoformat()
    )
    assert second.high_risk == len(pd.read_csv(folder / HIGH_RISK_FILE)) < first.high_risk
    same = pd.read_parquet(folder / PREDICTIONS_FILE)  # same data, same model: same scores
    assert same["churn_risk"].tolist() == sorted(same["churn_risk"], reverse=True)
    assert second.scored == first.scored
    _no_staging_left(settings)


def test_a_failed_run_keeps_the_previous_output(scored):
    settings, *_ = scored
    folder = batch_dir(settings.predictions_dir, END.date())
    before = _snapshot(folder)
    newest = partitions.partition_files(
        settings.features_path, [partitions.partition_days(settings.features_path)[-1]]
    )[0]
    original = Path(newest).read_bytes()
    Path(newest).write_bytes(b"not parquet at all")
    try:
        with pytest.raises(
            duckdb.Error, match=re.escape(Path(newest).name)
        ):  # Feast's join reads it
            score_population(settings, as_of=END)
    finally:
        Path(newest).write_bytes(original)
    assert _snapshot(folder) == before

    alias = settings.models_dir / registry.PRODUCTION_FILE
    shutil.move(alias, alias.with_suffix(".aside"))
    try:
        with pytest.raises(RegistryError, match="no production model"):
            score_population(settings, as_of=END)
    finally:
        shutil.move(alias.with_suffix(".aside"), alias)
    assert _snapshot(folder) == before
    _no_staging_left(settings)


def test_no_user_with_features_is_a_clear_error(scored):
    settings, *_ = scored
    late = END + timedelta(days=5)  # people active in the lookback, features all older than TTL
    with pytest.raises(ValueError, match=r"none of the .* active users has a feature row"):
        score_population(settings, as_of=late)
    assert not batch_dir(settings.predictions_dir, late.date()).exists()


def test_empty_population_is_a_clear_error(scored):
    settings, *_ = scored
    later = END + timedelta(days=settings.active_lookback_days + 2)
    with pytest.raises(ValueError, match="nobody was active"):
        score_population(settings, as_of=later)
    assert not batch_dir(settings.predictions_dir, later.date()).exists()


def test_the_run_pushes_its_metrics(scored, tmp_path):
    settings, *_ = scored
    with running_pushgateway(tmp_path) as url:
        result = score_population(settings.model_copy(update={"pushgateway_url": url}), as_of=END)
        assert result.pushed
        got = pushed_samples(url, "churn_batch")
    q = result.score_quantiles
    assert got == {
        ("churn_batch_duration_seconds", ()): result.duration_s,
        ("churn_batch_users_scored", ()): result.scored,
        ("churn_batch_users_skipped", ()): result.skipped,
        ("churn_batch_high_risk_users", ()): result.high_risk,
        ("churn_batch_holdout_users", ()): result.arms["holdout"],
        ("churn_batch_score_quantile", (("quantile", "0.5"),)): pytest.approx(q["p50"]),
        ("churn_batch_score_quantile", (("quantile", "0.9"),)): pytest.approx(q["p90"]),
        ("churn_batch_score_quantile", (("quantile", "0.99"),)): pytest.approx(q["p99"]),
        ("churn_batch_last_success_timestamp_seconds", ()): pytest.approx(result.finished_at.timestamp()),
        ("churn_batch_model_info", (("version", result.model_version),)): 1,
    }  # fmt: skip


def test_the_list_is_exported_when_the_export_dir_is_set_and_not_otherwise(scored, tmp_path):
    settings, first, *_ = scored
    assert settings.export_dir is None and first.exported is None
    outbox = tmp_path / "outbox"  # its parent exists: made by the run

    result = score_population(settings.model_copy(update={"export_dir": outbox}), as_of=END)

    dated = f"high_risk_{END:%Y-%m-%d}.csv"  # T's date, as the batch directory's
    assert sorted(p.name for p in outbox.iterdir()) == [dated, LATEST_FILE, MANIFEST_FILE]
    listed = (result.output_dir / HIGH_RISK_FILE).read_bytes()
    assert (outbox / dated).read_bytes() == listed == (outbox / LATEST_FILE).read_bytes()
    manifest = json.loads((outbox / MANIFEST_FILE).read_text())
    assert manifest["date"] == f"{END:%Y-%m-%d}" and manifest["file"] == dated
    assert manifest["rows"] == result.high_risk == result.exported.rows > 0
    assert manifest["columns"] == HIGH_RISK_COLUMNS
    assert manifest["model_version"] == result.model_version
    assert manifest["sha256"] == hashlib.sha256(listed).hexdigest()
    assert "exported" not in json.loads((result.output_dir / RUN_FILE).read_text())


def test_an_export_dir_that_is_not_there_fails_the_run_after_the_batch_is_written(scored, tmp_path):
    settings, *_ = scored
    folder = batch_dir(settings.predictions_dir, END.date())
    before = json.loads((folder / RUN_FILE).read_text())["started_at"]
    missing = tmp_path / "not-mounted" / "outbox"
    env = settings.as_env() | {"CHURN_EXPORT_DIR": str(missing)}

    result = CliRunner().invoke(app, ["batch", "score", "--as-of", f"{END:%Y-%m-%d}"], env=env)

    assert result.exit_code == 1, result.output
    line = (
        f"ExportError: cannot export the high-risk list to {missing}: neither it nor its parent "
        f"{missing.parent} exists (mount the volume there, or unset CHURN_EXPORT_DIR); the "
        f"batch itself is written in {folder}"
    )
    # The console folds a line longer than its width: compared without the whitespace.
    assert "".join(line.split()) in "".join(result.output.split())
    assert json.loads((folder / RUN_FILE).read_text())["started_at"] != before, "a new batch"
    assert not missing.parent.exists()
    _no_staging_left(settings)
