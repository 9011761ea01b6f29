"""The demo asks the API about users of the population, chosen by the population's owner."""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd
import pytest

from churn.demo import _sample_ids
from core import partitions
from core.atomic import write_parquet
from served.population import in_population, in_population_sql

LOOKBACK = 14
DAY = date(2026, 3, 9)


@pytest.mark.parametrize("recency", [0, 1, 13, 14, 15, 40])
@pytest.mark.parametrize("first", [None, 0, 3, 200])
def test_the_sql_population_of_a_feature_row_is_in_population(recency, first):
    row = pd.DataFrame(
        {"days_since_last_activity": [recency], "days_since_first_activity": [first]}
    ).astype({"days_since_first_activity": "Int64"})
    con = duckdb.connect()
    con.register("row", row)
    (inside,) = con.execute(f"SELECT {in_population_sql(LOOKBACK)} FROM row").fetchone()
    assert bool(inside) is in_population(recency, first, LOOKBACK)


def test_the_demo_never_picks_a_user_who_was_never_active(make_settings):
    """A user signed up three days ago and never active has days_since_last_activity 3
    (counted from signup): ``days_since_last_activity < lookback`` took them, the API
    refuses them (not in the population), and the demo's curl failed."""
    settings = make_settings(active_lookback_days=LOOKBACK)
    features = pd.DataFrame(
        {
            "user_id": ["u0-never", "u1", "u2-gone", "u3", "u9-never"],
            "days_since_last_activity": [3, 2, 30, 13, 0],
            "days_since_first_activity": [None, 50, 90, 20, None],
        }
    ).astype({"days_since_first_activity": "Int64"})
    write_parquet(features, partitions.partition_dir(settings.features_path, DAY) / "0.parquet")
    assert _sample_ids(settings, DAY) == ["u1", "u3"]
