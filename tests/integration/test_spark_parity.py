"""CHURN_ENGINE=spark against the embedded default, on the same generated portal.

Each engine builds its own tables and applies its own registry (a Feast project each)
from the same validated files; the Spark feature table must equal DuckDB's row for
row, Feast's Spark point-in-time join must give the same training set, and the Spark
batch the same scores, all with the same model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch.job import score_population
from batch.outputs import FEATURES_FILE, HIGH_RISK_FILE, PREDICTIONS_FILE
from core import partitions
from feature_repo.feast_cli import apply_definitions
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD, feature_names
from feature_repo.store import EngineMismatchError, online_feature_rows, open_store
from ingestion.generate import generate_demo_data, write_demo_data
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features
from ingestion.validate import run_validation
from tests.integration.world import TODAY
from training.dataset import training_set
from training.labels import LABEL, build_labels
from training.promote import force
from training.train import train_models


def _missing() -> str | None:
    """Why Spark cannot run here, or None."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install -e '.[spark]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime: Spark needs Java 17+ (java on PATH or JAVA_HOME)"
    return None


pytestmark = [
    pytest.mark.integration,
    pytest.mark.spark,
    pytest.mark.skipif(_missing() is not None, reason=str(_missing())),
]

USERS, DAYS = 250, 120
FLOAT_ATOL = 1e-9


@pytest.fixture(scope="module")
def engines(tmp_path_factory, isolated_settings):
    """The same validated data under two data dirs, features built and applied by each engine."""
    root = tmp_path_factory.mktemp("parity")
    duck = isolated_settings(root / "duckdb")
    spark = isolated_settings(root / "spark", engine="spark")
    data = generate_demo_data(
        n_users=USERS, days=DAYS, seed=11, start=TODAY.date() - timedelta(days=DAYS)
    )
    try:
        for settings in (duck, spark):
            write_demo_data(data, settings)
            assert run_validation(settings).passed
            build_user_daily(settings, now=TODAY)
            build_rolling_features(settings)
            apply_definitions(settings)
        yield duck, spark
    finally:
        for settings in (duck, spark):
            open_store(settings).teardown()


def _table(root) -> pd.DataFrame:
    frame = pd.read_parquet(root)  # the date=… directories give a `date` column
    frame["date"] = pd.to_datetime(frame["date"].astype(str)).dt.date
    return frame.sort_values([ENTITY_KEY, "date"]).reset_index(drop=True)


def assert_same_rows(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns and rows: exact for integers, strings, dates and timestamps, 1e-9 for floats.

    Doubles differ in the last bits between engines (summation order), never more.
    """
    assert got.columns.tolist() == expected.columns.tolist()
    assert len(got) == len(expected) > 0
    for column in expected.columns:
        left, right = got[column], expected[column]
        if pd.api.types.is_float_dtype(right):
            assert pd.api.types.is_float_dtype(left), column
            np.testing.assert_array_equal(left.isna(), right.isna(), err_msg=column)
            np.testing.assert_allclose(
                left.to_numpy(), right.to_numpy(), rtol=0, atol=FLOAT_ATOL, err_msg=column
            )
        else:
            assert left.tolist() == right.tolist(), column


def test_user_daily_is_the_same_row_for_row(engines):
    duck, spark = engines
    got, expected = _table(spark.user_daily_path), _table(duck.user_daily_path)
    assert got.dtypes.to_dict() == expected.dtypes.to_dict()
    # Spark collects a day's course ids in no fixed order; the set is the feature.
    for frame in (got, expected):
        frame["courses"] = frame["courses"].map(lambda ids: sorted(ids))
    assert_same_rows(got, expected)


def test_feature_table_is_the_same_row_for_row(engines):
    duck, spark = engines
    got, expected = _table(spark.features_path), _table(duck.features_path)
    assert partitions.partition_days(spark.features_path) == partitions.partition_days(
        duck.features_path
    )
    assert got.dtypes.to_dict() == expected.dtypes.to_dict()
    assert str(got[TIMESTAMP_FIELD].dtype) == "datetime64[us, UTC]"
    assert_same_rows(got, expected)


def test_the_daily_run_of_one_day_is_the_same(engines):
    """``--as-of`` (one day of events, the previous day's features) on both engines."""
    duck, spark = engines
    last = partitions.partition_days(duck.user_daily_path)[-1]
    for settings in (duck, spark):
        build_user_daily(settings, as_of=last)
        build_rolling_features(settings, as_of=last)
    days = {
        name: pd.read_parquet(partitions.partition_dir(s.features_path, last))
        .sort_values(ENTITY_KEY)
        .reset_index(drop=True)
        for name, s in (("duckdb", duck), ("spark", spark))
    }
    assert_same_rows(days["spark"], days["duckdb"])


def test_materialized_online_features_are_the_same(engines):
    """Feast's Spark compute engine loads Redis with what the local one loads from DuckDB
    (a Feast project each); run as the CLI, in a process that has started no Spark yet."""
    duck, spark = engines
    users = sorted(_table(duck.features_path)[ENTITY_KEY].unique())
    refs = [f"user_activity:{name}" for name in feature_names(duck.windows)]
    online = {}
    for settings in (duck, spark):
        subprocess.run(
            [str(Path(sys.executable).with_name("churn")), "features", "materialize",
             "--end", f"{TODAY:%Y-%m-%dT%H:%M:%S}"],
            env=os.environ | settings.as_env(), check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        online[settings.engine] = pd.DataFrame(online_feature_rows(settings, users, refs))
    assert online["spark"][refs[0].split(":")[1]].notna().sum() > len(users) / 2
    assert_same_rows(online["spark"], online["duckdb"])


def test_point_in_time_training_set_is_the_same(engines):
    duck, spark = engines
    labels = build_labels(duck)
    spark_labels = build_labels(spark)
    assert_same_rows(
        spark_labels.sort_values([TIMESTAMP_FIELD, ENTITY_KEY]).reset_index(drop=True),
        labels.sort_values([TIMESTAMP_FIELD, ENTITY_KEY]).reset_index(drop=True),
    )
    expected = training_set(duck, labels)
    got = training_set(spark, labels)
    assert got.feature_refs == expected.feature_refs
    assert got.missing.values.tolist() == expected.missing.values.tolist()
    columns = [ENTITY_KEY, TIMESTAMP_FIELD, LABEL, *expected.feature_names]
    frames = [
        ts.frame[columns].sort_values([TIMESTAMP_FIELD, ENTITY_KEY]).reset_index(drop=True)
        for ts in (got, expected)
    ]
    assert len(frames[1]) > 1000
    assert frames[0].dtypes.to_dict() == frames[1].dtypes.to_dict()
    assert_same_rows(frames[0], frames[1])


def test_batch_scores_are_the_same(engines):
    """One model, trained and promoted on DuckDB, copied to Spark's registry; both score T."""
    duck, spark = engines
    trained = train_models(duck, now=TODAY)
    force(duck, trained.versions[trained.best], "parity test")
    shutil.copytree(duck.models_dir, spark.models_dir)
    expected_run = score_population(duck, as_of=TODAY)
    got_run = score_population(spark, as_of=TODAY)
    assert (got_run.population, got_run.scored, got_run.skipped) == (
        expected_run.population,
        expected_run.scored,
        expected_run.skipped,
    )
    assert sorted(p.name for p in got_run.output_dir.iterdir()) == sorted(
        p.name for p in expected_run.output_dir.iterdir()
    )
    for name in (PREDICTIONS_FILE, FEATURES_FILE):
        got = pd.read_parquet(got_run.output_dir / name)
        expected = pd.read_parquet(expected_run.output_dir / name)
        assert got.dtypes.to_dict() == expected.dtypes.to_dict(), name
        assert_same_rows(got, expected)
    got = pd.read_csv(got_run.output_dir / HIGH_RISK_FILE)
    expected = pd.read_csv(expected_run.output_dir / HIGH_RISK_FILE)
    assert_same_rows(got, expected)


@pytest.mark.parametrize("applied", ["duckdb", "spark"])
def test_a_registry_applied_by_the_other_engine_is_named(engines, applied):
    settings = dict(zip(("duckdb", "spark"), engines, strict=True))[applied]
    other = "spark" if applied == "duckdb" else "duckdb"
    wrong = settings.model_copy(update={"engine": other})
    expected = (
        rf"applied with CHURN_ENGINE={applied}.*`churn features apply` with CHURN_ENGINE={other}"
    )
    with pytest.raises(EngineMismatchError, match=expected):
        training_set(wrong, build_labels(settings).head(10))
