"""Online/offline skew, the pure parts: cell comparison, sampling, the batched read of a
feature source, and bad input."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import partitions
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from monitor.skew import cell_mismatches, fetch_online, sample_users, skew_report
from online_api.online_features import FeatureRow


def test_an_empty_features_table_is_a_clear_error(make_settings):
    settings = make_settings()
    with pytest.raises(FileNotFoundError, match=r"features table .* is empty"):
        skew_report(settings)
    empty = pa.table({ENTITY_KEY: pa.array([], pa.string()),
                      TIMESTAMP_FIELD: pa.array([], pa.timestamp("us", tz="UTC"))})  # fmt: skip
    day = partitions.partition_dir(settings.features_path, date(2026, 3, 1))
    day.mkdir(parents=True)
    pq.write_table(empty, day / "data_0.parquet")
    with pytest.raises(ValueError, match="has no rows"):
        skew_report(settings)


def test_cells_compare_missing_numbers_and_strings():
    index = pd.Index(["a", "b", "c", "d", "e", "f"], name=ENTITY_KEY)
    offline = pd.DataFrame(
        {
            "n": [np.nan, 1.0, 1e12, 1.0, 5.0, 0.0],
            "i": np.array([3, 3, 3, 3, 3, 7], dtype="int64"),
            "s": ["DE", None, "DE", "DE", "DE", np.nan],
        },
        index=index,
    )
    online = pd.DataFrame(
        {
            "n": [None, 1.0 + 1e-12, 1e12 + 1e-1, 1.001, None, 1e-10],
            "i": [3, 3, 3, 4, None, 7],
            "s": ["DE", None, "de", "DE", None, None],
        },
        index=index,
        dtype=object,
    )
    got = cell_mismatches(offline, online)
    assert got.to_dict(orient="list") == {
        # both missing; abs 1e-12; rel 1e-13; 1e-3 apart; one missing; abs 1e-10
        "n": [False, False, False, True, True, False],
        "i": [False, False, False, True, True, False],
        "s": [False, False, True, False, True, False],
    }


def test_the_sample_is_seeded_sorted_and_capped():
    users = [f"u{i:03d}" for i in range(200)]
    first = sample_users(list(reversed(users)), 20, seed=1)
    assert first == sample_users(users, 20, seed=1) == sorted(first)
    assert len(set(first)) == 20
    assert sample_users(users, 20, seed=2) != first
    assert sample_users(users, 500, seed=1) == users


class DictSource:
    """A feature source over a dict of rows; records each fetch's size and each close, and
    fails the fetch that reaches ``fail_at`` users."""

    def __init__(self, rows: dict[str, dict], fail_at: int | None = None) -> None:
        self.rows, self.fail_at = rows, fail_at
        self.fetched: list[int] = []
        self.closed = 0

    def plan(self, feature_service, refs, also=()):
        raise AssertionError("fetch_online is given the plan")

    async def fetch(self, user_ids, plan):
        self.fetched.append(len(user_ids))
        if self.fail_at is not None and sum(self.fetched) >= self.fail_at:
            raise ConnectionError("store gone")
        stamp = datetime(2026, 3, 2, tzinfo=UTC)
        return [FeatureRow(self.rows[u], stamp) if u in self.rows else None for u in user_ids]

    async def aclose(self):
        self.closed += 1


def test_the_source_is_read_in_chunks_in_order_and_closed():
    rows = {"a": {"x": 1, "y": "DE"}, "c": {"x": 2.5}, "d": {"x": None, "y": "FR", "z": 9}}
    source = DictSource(rows)
    got = fetch_online(source, object(), ["a", "b", "c", "d", "e"], ["x", "y"], chunk=2)
    assert source.fetched == [2, 2, 1] and source.closed == 1
    assert got.index.name == ENTITY_KEY and list(got.columns) == ["x", "y"]
    # Unknown users and names a row lacks are None; values keep their served type.
    assert got.to_dict(orient="index") == {
        "a": {"x": 1, "y": "DE"}, "b": {"x": None, "y": None}, "c": {"x": 2.5, "y": None},
        "d": {"x": None, "y": "FR"}, "e": {"x": None, "y": None},
    }  # fmt: skip
    assert type(got.at["a", "x"]) is int


def test_the_source_is_closed_when_a_fetch_fails():
    source = DictSource({}, fail_at=3)
    with pytest.raises(ConnectionError):
        fetch_online(source, object(), ["a", "b", "c", "d"], ["x"], chunk=2)
    assert source.fetched == [2, 2] and source.closed == 1
