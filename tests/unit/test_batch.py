"""Pure parts of the nightly batch: population, feature stamps, ranking, the high-risk list."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from batch.high_risk import (
    HIGH_RISK_COLUMNS,
    revenue_sql,
    select_high_risk,
    with_revenue,
)
from batch.job import (
    USER_FEATURES,
    BatchResult,
    batch_samples,
    print_batch,
    rank_scores,
    run_time,
    score_quantiles,
)
from core.atomic import write_parquet
from core.partitions import partition_days
from core.sql_engine import DuckEngine
from core.tables import EVENTS, USER_DAILY, USERS, register_table
from served.population import population_sql
from training.dataset import newest_rows_sql

T = datetime(2026, 5, 2, tzinfo=UTC)
D = T.date()


def _daily_table(root: Path, rows: list[tuple[str, date, int]], settings) -> None:
    """A tiny ``user_daily`` (user_id, date, active) written as the real table is."""
    frame = pd.DataFrame(rows, columns=["user_id", "date", "active"])
    engine = DuckEngine(settings)
    engine.register_frame("rows", frame)
    engine.write_table("SELECT user_id, CAST(date AS DATE) AS date, active FROM rows", root)


def _engine_with(settings, name: str, root: Path) -> DuckEngine:
    """A DuckDB engine with the day-partitioned table at ``root`` registered as ``name``."""
    engine = DuckEngine(settings)
    register_table(engine, name, root, partition_days(root))
    return engine


def test_population_is_active_in_the_lookback_before_t(make_settings, tmp_path):
    settings = make_settings()
    root = tmp_path / "user_daily"
    day = lambda n: D - timedelta(days=n)  # noqa: E731 - day n days before T
    rows = [
        ("a_yesterday", day(1), 1),
        ("b_first_day_of_lookback", day(14), 1),
        ("b_first_day_of_lookback", day(13), 0),
        ("c_one_day_too_early", day(15), 1),
        ("c_one_day_too_early", day(14), 0),
        ("c_one_day_too_early", day(1), 0),
        ("d_on_day_t_only", D, 1),
        ("d_on_day_t_only", day(1), 0),
        ("e_never_active", day(5), 0),
        ("e_never_active", day(4), 0),
        ("f_twice", day(5), 1),
        ("f_twice", day(3), 1),
    ]
    _daily_table(root, rows, settings)
    engine = _engine_with(settings, USER_DAILY, root)
    users = [r[0] for r in engine.rows(population_sql(D, 14))]
    assert users == ["a_yesterday", "b_first_day_of_lookback", "f_twice"]
    assert [r[0] for r in engine.rows(population_sql(D, 13))] == [
        "a_yesterday",
        "f_twice",
    ]


def test_feature_stamp_is_the_newest_row_feast_may_serve(make_settings, tmp_path):
    settings = make_settings()
    stamp = lambda n: T - timedelta(days=n)  # noqa: E731 - n days before T
    frame = pd.DataFrame(
        [
            ("fresh", stamp(0)),  # day T-1's row, stamped T: the one used
            ("fresh", stamp(1)),
            ("at_ttl_edge", stamp(3)),  # stamp + ttl = T: Feast still serves it
            ("at_ttl_edge", stamp(5)),
            ("too_old", stamp(4)),
            ("future_only", T + timedelta(days=1)),  # stamped after T: not visible yet
        ],
        columns=["user_id", "event_timestamp"],
    )
    # TIMESTAMPTZ in microseconds, as the feature build writes it
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"]).astype(
        "datetime64[us, UTC]"
    )
    frame["days_back"] = ((T - frame["event_timestamp"]) / timedelta(days=1)).astype("int64")
    for day, part in frame.groupby(frame["event_timestamp"].dt.date):
        write_parquet(part, tmp_path / "f" / f"date={day - timedelta(days=1)}" / "data_0.parquet")
    engine = _engine_with(settings, USER_FEATURES, tmp_path / "f")
    got = engine.frame(newest_rows_sql(USER_FEATURES, T, timedelta(days=3)))
    got = got.set_index("user_id")["features_as_of"]
    assert got.to_dict() == {
        "fresh": pd.Timestamp(stamp(0)),
        "at_ttl_edge": pd.Timestamp(stamp(3)),
    }
    # The same rows with their values, for some users only: what the skew check reads.
    engine.register_frame("picked", pd.DataFrame({"user_id": ["at_ttl_edge", "too_old"]}))
    rows = engine.frame(
        newest_rows_sql(USER_FEATURES, T, timedelta(days=3), ["days_back"], users="picked")
    )
    assert rows.to_dict(orient="list") == {
        "user_id": ["at_ttl_edge"],
        "features_as_of": [pd.Timestamp(stamp(3))],
        "days_back": [3],
    }


def test_rank_one_is_the_highest_risk_and_ties_go_by_user_id(make_settings):
    settings = make_settings(risk_band_medium=0.15, risk_band_high=0.35)
    users = pd.Series(["u3", "u1", "u2", "u4", "u5"])
    risks = np.array([0.2, 0.5, 0.2, 0.35, 0.149])
    ranked = rank_scores(users, risks, settings)
    assert ranked["user_id"].tolist() == ["u1", "u4", "u2", "u3", "u5"]
    assert ranked["rank"].tolist() == [1, 2, 3, 4, 5]
    assert ranked["risk_band"].tolist() == ["high", "high", "medium", "medium", "low"]
    assert ranked["churn_risk"].tolist() == [0.5, 0.35, 0.2, 0.2, 0.149]


def test_score_quantiles():
    q = score_quantiles(np.arange(101) / 100)
    assert q == pytest.approx({"p50": 0.5, "p90": 0.9, "p99": 0.99})


def _predictions(bands: list[str]) -> pd.DataFrame:
    n = len(bands)
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(1, n + 1)],
            "churn_risk": np.linspace(0.9, 0.1, n),
            "risk_band": bands,
            "rank": np.arange(1, n + 1),
            "model_version": "v1",
        }
    ).sample(frac=1, random_state=0)  # shuffled: the selection must sort by rank itself


@pytest.mark.parametrize(
    ("bands", "top_k", "expected"),
    [
        # the high band is longer than K: all of it
        (["high"] * 4 + ["medium", "low"], 2, ["u1", "u2", "u3", "u4"]),
        # K reaches past the high band: the top K
        (["high", "medium", "medium", "low", "low"], 3, ["u1", "u2", "u3"]),
        # nobody high: still the top K
        (["medium", "low", "low"], 1, ["u1"]),
        # K larger than everyone
        (["low", "low"], 50, ["u1", "u2"]),
    ],
)
def test_high_risk_is_the_top_k_plus_the_high_band(bands, top_k, expected):
    selected = select_high_risk(_predictions(bands), top_k)
    assert selected["user_id"].tolist() == expected
    assert selected["rank"].tolist() == list(range(1, len(expected) + 1))


def _contract_tables(tmp_path: Path) -> tuple[Path, Path]:
    users = pd.DataFrame(
        {
            "user_id": ["paid_a", "paid_b", "free_c", "paid_d"],
            "plan": ["paid", "paid", "free", "unknown"],
        }
    )
    at = lambda days, hours=0: T - timedelta(days=days, hours=hours)  # noqa: E731
    events = pd.DataFrame(
        [
            ("paid_a", at(10), "payment_success", 30.0),
            ("paid_a", at(40), "payment_success", 30.0),
            ("paid_a", at(70), "payment_success", 30.0),
            ("paid_a", at(90), "payment_success", 30.0),  # T - 90 days exactly: inside
            ("paid_a", at(90, 1), "payment_success", 999.0),  # an hour earlier: outside
            ("paid_a", T, "payment_success", 999.0),  # at T: the next run's
            ("paid_a", at(5), "login", np.nan),
            ("paid_b", at(20), "payment_failed", 15.0),  # failed: no revenue
            ("paid_b", at(50), "payment_success", 15.0),
            ("free_c", at(80), "payment_success", 12.0),  # paid, then downgraded
            ("not_in_users", at(3), "payment_success", 9.0),
            ("not_selected", at(3), "payment_success", 100.0),
        ],
        columns=["user_id", "event_time", "event_type", "amount"],
    )
    write_parquet(users, tmp_path / "users.parquet")
    write_parquet(events, tmp_path / "events.parquet")
    return tmp_path / "users.parquet", tmp_path / "events.parquet"


def test_revenue_columns(make_settings, tmp_path):
    users, events = _contract_tables(tmp_path)
    selected = pd.DataFrame(
        {
            "user_id": ["free_c", "paid_a", "paid_b", "paid_d", "not_in_users"],
            "churn_risk": [0.9, 0.5, 0.4, 0.3, 0.2],
            "risk_band": ["high", "high", "high", "medium", "medium"],
            "arm": ["contact", "contact", "holdout", "contact", "contact"],
            "rank": [1, 2, 3, 4, 5],
            "model_version": "v1",
        }
    )
    engine = DuckEngine(make_settings())
    engine.register(USERS, [users])
    engine.register(EVENTS, [events])
    engine.register_frame("selected", selected[["user_id"]])
    revenue = engine.frame(revenue_sql(T))
    out = with_revenue(selected, revenue)
    assert out.columns.tolist() == HIGH_RISK_COLUMNS
    rows = out.set_index("user_id")
    assert rows["plan"].to_dict() == {
        "free_c": "free",
        "paid_a": "paid",
        "paid_b": "paid",
        "paid_d": "unknown",
        "not_in_users": "unknown",
    }
    assert rows["monthly_revenue"].to_dict() == {
        "free_c": 4.0,
        "paid_a": 40.0,  # 4 × 30 in [T - 90 d, T) over 3 months
        "paid_b": 5.0,
        "paid_d": 0.0,
        "not_in_users": 3.0,
    }
    assert rows["expected_revenue_at_risk"].to_dict() == {
        "free_c": 0.0,  # free plan: nothing left to lose
        "paid_a": 20.0,
        "paid_b": 2.0,
        "paid_d": 0.0,
        "not_in_users": 0.6,
    }
    assert out["rank"].tolist() == [1, 2, 3, 4, 5]


def test_run_time():
    assert run_time(None, now=datetime(2026, 5, 2, 17, 30, tzinfo=UTC)) == T
    # midnight UTC written in another zone is the same T
    assert run_time(datetime(2026, 5, 2, 2, tzinfo=timezone(timedelta(hours=2)))) == T
    with pytest.raises(ValueError, match="timezone-aware"):
        run_time(datetime(2026, 5, 2))
    with pytest.raises(ValueError, match="UTC midnight"):
        run_time(datetime(2026, 5, 2, 6, tzinfo=UTC))


def _result(**changes) -> BatchResult:
    values = dict(
        as_of=T,
        model_version="20260501T000000Z-abcdef12",
        output_dir=Path("/tmp/predictions/as_of=2026-05-02"),
        population=120,
        scored=118,
        skipped=2,
        skipped_examples=["u000007", "u000042"],
        high_risk=31,
        bands={"high": 25, "medium": 40, "low": 53},
        score_quantiles={"p50": 0.12, "p90": 0.41, "p99": 0.77},
        started_at=T + timedelta(hours=2),
        finished_at=T + timedelta(hours=2, seconds=12.5),
        duration_s=12.5,
        arms={"contact": 28, "holdout": 3},
    )
    return BatchResult(**(values | changes))


def test_pushed_samples():
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in batch_samples(_result())}
    assert samples == {
        ("churn_batch_duration_seconds", ()): 12.5,
        ("churn_batch_users_scored", ()): 118,
        ("churn_batch_users_skipped", ()): 2,
        ("churn_batch_high_risk_users", ()): 31,
        ("churn_batch_holdout_users", ()): 3,
        ("churn_batch_score_quantile", (("quantile", "0.5"),)): 0.12,
        ("churn_batch_score_quantile", (("quantile", "0.9"),)): 0.41,
        ("churn_batch_score_quantile", (("quantile", "0.99"),)): 0.77,
        ("churn_batch_last_success_timestamp_seconds", ()): (T + timedelta(hours=2, seconds=12.5)).timestamp(),
        ("churn_batch_model_info", (("version", "20260501T000000Z-abcdef12"),)): 1,
    }  # fmt: skip


def test_run_record_is_json_with_iso_dates():
    record = json.loads(json.dumps(_result().run_record()))
    assert record["as_of"] == "2026-05-02T00:00:00+00:00"
    assert record["skipped_examples"] == ["u000007", "u000042"]
    assert record["score_quantiles"]["p99"] == 0.77
    assert "output_dir" not in record and "pushed" not in record
    assert {"population", "scored", "skipped", "high_risk", "started_at", "finished_at",
            "duration_s", "model_version", "arms"} <= set(record)  # fmt: skip
    assert record["arms"] == {"contact": 28, "holdout": 3}


def test_print_batch_shows_the_figures():
    console = Console(record=True, width=120)
    print_batch(_result(), console)
    text = console.export_text()
    for part in ("2026-05-02", "20260501T000000Z-abcdef12", "118", "u000007", "0.770", "31"):
        assert part in text
