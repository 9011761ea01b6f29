"""The Spark rendering of the spec's SQL: sqlglot's translation, refused when incomplete."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -e '.[spark]')")

from sqlglot.errors import UnsupportedError

from batch.high_risk import revenue_sql
from batch.job import USER_FEATURES
from core.spark_engine import launched_by_spark_submit, to_spark
from ingestion.prepare import user_daily_sql
from ingestion.rolling_features import rolling_features_sql, user_courses_sql
from served.population import population_sql
from training.dataset import newest_rows_sql
from training.labels import AsOfRange, labels_at_sql, labels_sql

D = date(2026, 5, 1)
T = datetime(2026, 5, 2, tzinfo=UTC)
ASOF = AsOfRange(D, D + timedelta(days=3), 1)

RENDERED = {
    "user_daily": user_daily_sql(D, D + timedelta(days=30)),
    "features": rolling_features_sql((7, 14, 30), D, D + timedelta(days=30), D),
    "features, one day": rolling_features_sql((7, 30), D, D, D - timedelta(days=60), True),
    "features, no courses": rolling_features_sql((7,), D, D, D, courses=False),
    "user courses": user_courses_sql(D, D + timedelta(days=30), seen=False),
    "user courses, one day": user_courses_sql(D, D, seen=True),
    "labels": labels_sql(ASOF, 14, 30),
    "labels, outreach left out": labels_sql(ASOF, 14, 30, contacted="contacted"),
    "population": population_sql(D, 14),
    "labels at T": labels_at_sql("scored", D, 30),
    "feature stamps": newest_rows_sql(USER_FEATURES, T, timedelta(days=3)),
    "newest rows": newest_rows_sql(USER_FEATURES, T, timedelta(days=3), ["x"], "sampled"),
    "revenue": revenue_sql(T),
}


@pytest.mark.parametrize("name", RENDERED)
def test_every_rendered_query_translates_whole(name):
    sql = to_spark(RENDERED[name])
    assert "read_parquet" not in sql.lower()
    assert "FROM )" not in sql


def test_duckdb_only_constructs_become_spark_ones():
    daily = to_spark(RENDERED["user_daily"])
    assert "EXPLODE(SEQUENCE(" in daily
    assert "ARRAY_DISTINCT(COLLECT_LIST(" in daily
    assert "TIMESTAMPTZ" not in daily
    features = to_spark(RENDERED["features"])
    assert "EXPLODE(courses)" in features
    assert "CAST(NULL AS DATE)" in features  # DuckDB's NULL::DATE: no previous day
    assert "DECIMAL(38, 6)" in features  # exact sums of floats


def test_what_sqlglot_cannot_translate_is_refused_not_dropped():
    # sqlglot drops a multi-file read_parquet with a log line; the engines register views.
    with pytest.raises(UnsupportedError, match="READ_PARQUET"):
        to_spark("SELECT * FROM read_parquet(['a.parquet', 'b.parquet'], hive_partitioning = true)")


def test_spark_submit_is_told_by_its_gateway(monkeypatch):
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert not launched_by_spark_submit()
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "40000")
    assert launched_by_spark_submit()


def test_features_sql_prints_the_spark_sql_under_the_spark_engine(tmp_path):
    from typer.testing import CliRunner

    from churn.cli import app

    env = {"CHURN_DATA_DIR": str(tmp_path), "CHURN_ENGINE": "spark"}
    result = CliRunner().invoke(app, ["features", "sql"], env=env)
    assert result.exit_code == 0, result.output
    assert "EXPLODE(SEQUENCE(" in result.output
    assert "unnest(" not in result.output
