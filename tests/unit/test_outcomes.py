"""Realized outcomes on a hand-made ``user_daily`` and hand-made batch predictions.

``user_daily`` covers 2026-03-01 … 2026-03-16; the horizon is 5 days, so the batch of
03-10 is judged on days 03-10 … 03-14, the batch of 03-12 on 03-12 … 03-16 (the last day
there is: just complete) and the batch of 03-13 is still pending (needs 03-17).
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from batch.outputs import FEATURES_FILE, PREDICTIONS_FILE, RUN_FILE, batch_dir
from core import partitions
from core.atomic import write_parquet
from core.settings import HISTORY_FILE
from core.sql_engine import DuckEngine, connect
from monitor.calibration import equal_mass_bins, expected_calibration_error
from monitor.outcomes import (
    LEGACY_HISTORY_FILE,
    RELIABILITY_DIR,
    OutcomesReport,
    history_lines,
    outcome_of,
    outcome_samples,
    print_outcomes,
    read_history,
    realized_labels_sql,
    realized_outcomes,
    reliability_path,
)
from training.evaluation import evaluate

HORIZON = 5
FIRST, LAST = date(2026, 3, 1), date(2026, 3, 16)
D = date(2026, 3, 10)

# Hand-made users around the window [03-10, 03-15) of the batch of 03-10.
EDGE_USERS = {
    "on_last_day": [date(2026, 3, 14)],  # D + horizon - 1: inside, stays
    "on_first_day": [date(2026, 3, 10)],  # D itself: inside, stays
    "day_after": [date(2026, 3, 15)],  # D + horizon: outside, churned
    "day_before": [date(2026, 3, 9)],  # before D: not in the window, churned
    "silent_rows": [],  # rows, all inactive: churned
}
EDGE_LABELS = {
    "on_last_day": 0,
    "on_first_day": 0,
    "day_after": 1,
    "day_before": 1,
    "silent_rows": 1,
    "no_rows": 1,  # no user_daily row at all: churned
}


def _random_activity(n: int, seed: int) -> dict[str, list[date]]:
    """Users active on random days, some never (a few percent churn per day of silence)."""
    rng = np.random.default_rng(seed)
    days = [FIRST + timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    return {
        f"u{i:03d}": [d for d in days if rng.random() < rng.choice([0.02, 0.1, 0.5])]
        for i in range(n)
    }


ACTIVITY = EDGE_USERS | _random_activity(60, seed=3)


def expected_label(user: str, as_of: date) -> int:
    """Churned unless active on a day in [as_of, as_of + horizon), computed in Python."""
    days = ACTIVITY.get(user, [])
    return int(not any(as_of <= d < as_of + timedelta(days=HORIZON) for d in days))


def write_user_daily(settings, activity: dict[str, list[date]], last: date = LAST) -> None:
    """A row per user per day FIRST … last, active 0/1 (as ``ingestion.prepare`` writes it)."""
    days = [FIRST + timedelta(days=i) for i in range((last - FIRST).days + 1)]
    rows = [(u, d, int(d in active)) for u, active in activity.items() for d in days]
    frame = pd.DataFrame(rows, columns=["user_id", "date", "active"])
    engine = DuckEngine(settings)
    engine.register_frame("daily", frame)
    engine.write_table(
        "SELECT user_id, date, CAST(active AS BIGINT) AS active FROM daily",
        settings.user_daily_path,
    )


def predictions(users: list[str], seed: int, version: str = "v1") -> pd.DataFrame:
    """Predictions as the batch writes them; the risks are random but fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    risk = rng.random(len(users)).round(4)
    frame = pd.DataFrame({"user_id": users, "churn_risk": risk})
    frame["risk_band"] = np.where(risk >= 0.35, "high", np.where(risk >= 0.15, "medium", "low"))
    frame["rank"] = frame["churn_risk"].rank(ascending=False, method="first").astype(int)
    frame["model_version"] = version
    frame["features_as_of"] = pd.Timestamp("2026-03-01", tz="UTC")
    return frame


def write_batch(settings, day: date, frame: pd.DataFrame) -> None:
    """A batch directory as the nightly job leaves it."""
    out = batch_dir(settings.predictions_dir, day)
    write_parquet(frame, out / PREDICTIONS_FILE)
    write_parquet(frame[["user_id"]], out / FEATURES_FILE)
    (out / RUN_FILE).write_text(json.dumps({"as_of": day.isoformat()}))


SCORED = sorted([*ACTIVITY, "no_rows"])


@pytest.fixture
def settings(make_settings):
    settings = make_settings(horizon_days=HORIZON, top_k=10)
    write_user_daily(settings, ACTIVITY)
    write_batch(settings, D, predictions(SCORED, seed=1))
    write_batch(settings, date(2026, 3, 12), predictions(SCORED, seed=2, version="v2"))
    write_batch(settings, date(2026, 3, 13), predictions(SCORED, seed=3, version="v2"))
    return settings


def _labels(settings, as_of: date) -> pd.DataFrame:
    con = connect(settings)
    con.register("scored", predictions(SCORED, seed=1)[["user_id", "churn_risk"]])
    sql = realized_labels_sql(
        "scored", partitions.table_glob(settings.user_daily_path), as_of, HORIZON
    )
    return con.execute(sql).df().set_index("user_id")


@pytest.mark.parametrize(("user", "churned"), EDGE_LABELS.items())
def test_labels_at_the_window_edges(settings, user, churned):
    assert _labels(settings, D).loc[user, "churned"] == churned


def test_every_label_matches_the_python_reckoning(settings):
    for as_of in (D, date(2026, 3, 12)):
        labels = _labels(settings, as_of)
        assert list(labels.index) == SCORED  # one row per scored user, sorted
        assert labels["churned"].to_dict() == {u: expected_label(u, as_of) for u in SCORED}


def test_evaluated_and_pending_dates(settings):
    report = realized_outcomes(settings)
    assert [o.as_of for o in report.evaluated] == [D, date(2026, 3, 12)]
    assert [(p.as_of, p.complete_on) for p in report.pending] == [
        (date(2026, 3, 13), date(2026, 3, 17))
    ]
    assert report.last_complete_day == LAST
    assert report.latest.as_of == date(2026, 3, 12)
    assert report.latest.model_version == "v2"


def test_metrics_equal_evaluate_on_the_same_arrays(settings):
    report = realized_outcomes(settings)
    for outcome, seed in zip(report.evaluated, (1, 2), strict=True):
        frame = predictions(SCORED, seed=seed)
        y = np.array([expected_label(u, outcome.as_of) for u in frame["user_id"]])
        want = evaluate(y, frame["churn_risk"].to_numpy(), k=10)
        assert 0 < want["positives"] < len(y)  # both classes: a meaningful check
        for key in ("rows", "positives", "base_rate", "pr_auc", "pr_auc_skill", "roc_auc",
                    "precision_at_k", "brier", "k"):  # fmt: skip
            assert getattr(outcome, key) == pytest.approx(want[key], abs=1e-12), key
        assert outcome.pr_auc_lift == pytest.approx(want["pr_auc"] / want["base_rate"])
        assert outcome.pr_auc_skill == pytest.approx(
            (want["pr_auc"] - want["base_rate"]) / (1 - want["base_rate"])
        )
        assert sum(row["count"] for row in outcome.calibration) == len(y)
        for row in outcome.calibration:
            in_bin = (frame["churn_risk"] >= row["bin_low"]) & (
                (frame["churn_risk"] < row["bin_high"]) | (row["bin_high"] == 1.0)
            )
            assert row["count"] == in_bin.sum()
            assert row["mean_predicted"] == pytest.approx(frame["churn_risk"][in_bin].mean())
            assert row["observed_rate"] == pytest.approx(y[in_bin.to_numpy()].mean())


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_history_is_idempotent_and_recomputed(settings):
    report = realized_outcomes(settings)
    path = settings.outcomes_history_path
    assert report.history_path == path
    first = path.read_bytes()
    realized_outcomes(settings)
    assert path.read_bytes() == first  # same inputs, same figures: nothing appended
    records = _lines(path)
    assert [r["as_of"] for r in records] == ["2026-03-10", "2026-03-12"]

    # New predictions for 03-10 replace its figures; a day more of user_daily completes 03-13.
    write_batch(settings, D, predictions(SCORED, seed=9, version="v9"))
    write_user_daily(settings, ACTIVITY, last=LAST + timedelta(days=1))
    report = realized_outcomes(settings)
    assert report.pending == []
    # Append-only: the changed date and the new one are lines of their own.
    assert [r["as_of"] for r in _lines(path)] == [
        "2026-03-10", "2026-03-12", "2026-03-10", "2026-03-13",
    ]  # fmt: skip
    history = read_history(path)
    assert list(history) == ["2026-03-10", "2026-03-12", "2026-03-13"]
    assert history["2026-03-10"]["model_version"] == "v9"
    assert history["2026-03-10"]["pr_auc"] == report.evaluated[0].pr_auc
    assert history["2026-03-12"] == records[1]  # untouched input, same figures


def test_an_older_history_record_without_skill_still_loads(settings):
    """Histories written before pr_auc_skill existed, as a JSON list: the skill comes from
    PR-AUC and base rate, and the first write carries every old figure over beside it."""
    legacy = settings.outcomes_dir / LEGACY_HISTORY_FILE
    path = settings.outcomes_history_path
    old = {"as_of": "2026-03-01", "model_version": "v0", "horizon_days": HORIZON,
           "rows": 100, "positives": 52, "base_rate": 0.52, "pr_auc": 0.70,
           "pr_auc_lift": 0.70 / 0.52, "roc_auc": 0.7, "precision_at_k": 0.8, "k": 10,
           "brier": 0.2, "calibration": []}  # fmt: skip
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps([old]))
    assert read_history(path)["2026-03-01"]["pr_auc_skill"] == pytest.approx(0.375)

    realized_outcomes(settings)  # no batch of 03-01 any more: the record is kept, upgraded
    assert not legacy.exists()
    kept = _lines(path)[0]
    assert kept == old | {"pr_auc_skill": pytest.approx(0.375)}
    assert list(read_history(path)) == ["2026-03-01", "2026-03-10", "2026-03-12"]


def test_a_legacy_history_is_carried_over_with_its_figures(settings):
    """A user upgrading keeps their history: the list's records, then the new lines."""
    realized_outcomes(settings)
    path = settings.outcomes_history_path
    records = _lines(path)
    legacy = path.with_name(LEGACY_HISTORY_FILE)
    legacy.write_text(json.dumps(records[::-1], indent=2))  # as the old writer left it
    path.unlink()
    assert read_history(path) == {r["as_of"]: r for r in records}

    realized_outcomes(settings)
    assert not legacy.exists()
    assert _lines(path) == records  # carried over in date order; nothing changed since


def test_history_keeps_dates_whose_batch_was_removed(settings):
    realized_outcomes(settings)
    path = settings.outcomes_history_path
    kept = read_history(path)["2026-03-10"]
    shutil.rmtree(batch_dir(settings.predictions_dir, D))
    realized_outcomes(settings)
    assert read_history(path)["2026-03-10"] == kept


def test_no_batch_directories_is_a_clear_error(make_settings):
    settings = make_settings()
    staging = batch_dir(settings.predictions_dir, D)
    staging.with_name(f".{staging.name}.staging").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no batch predictions"):
        realized_outcomes(settings)


def test_a_corrupt_predictions_file_is_named_and_nothing_is_damaged(settings):
    realized_outcomes(settings)
    path = settings.outcomes_history_path
    before = path.read_bytes()
    bad = batch_dir(settings.predictions_dir, date(2026, 3, 12)) / PREDICTIONS_FILE
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ValueError, match=re.escape(f"{bad.parent.name}/{bad.name}")):
        realized_outcomes(settings)
    assert path.read_bytes() == before


def test_predictions_without_a_risk_column_are_named(settings):
    bad = batch_dir(settings.predictions_dir, D) / PREDICTIONS_FILE
    write_parquet(predictions(SCORED, seed=1).drop(columns="churn_risk"), bad)
    where = re.escape(f"{bad.parent.name}/{bad.name}")
    with pytest.raises(ValueError, match=rf"{where}.*churn_risk"):
        realized_outcomes(settings)
    assert not settings.outcomes_history_path.parent.exists()


@pytest.mark.parametrize(
    ("name", "text"),
    [(HISTORY_FILE, '{"as_of": "2026-03-10"}\n{not json\n'), (LEGACY_HISTORY_FILE, "{not json")],
)
def test_a_corrupt_history_is_not_overwritten(settings, name, text):
    path = settings.outcomes_dir / name
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"{name} is not an outcomes history"):
        realized_outcomes(settings)
    assert [p.name for p in path.parent.iterdir()] == [name]
    assert path.read_text() == text


def test_a_date_with_one_realized_class_is_reported_not_fatal(make_settings):
    settings = make_settings(horizon_days=HORIZON)
    write_user_daily(settings, {"a": [D], "b": [D + timedelta(days=1)]})
    write_batch(settings, D, predictions(["a", "b"], seed=1))
    report = realized_outcomes(settings)
    assert report.evaluated == [] and report.latest is None
    assert [s.as_of for s in report.skipped] == [D]
    assert "only negatives" in report.skipped[0].reason
    assert outcome_samples(report) == []
    # The history says the date was looked at and why it has no figures, once.
    path = settings.outcomes_history_path
    marker = {"as_of": D.isoformat(), "skipped": report.skipped[0].reason}
    assert history_lines(path) == {D.isoformat(): marker}
    assert read_history(path) == {}
    realized_outcomes(settings)
    assert _lines(path) == [marker]


def test_a_date_that_loses_its_figures_leaves_the_history(settings):
    realized_outcomes(settings)
    path = settings.outcomes_history_path
    everyone_stays = {u: [D + timedelta(days=i) for i in range(HORIZON)] for u in SCORED}
    write_user_daily(settings, everyone_stays)  # 03-10 and 03-12: only negatives now
    report = realized_outcomes(settings)
    assert [s.as_of for s in report.skipped] == [D, date(2026, 3, 12)]
    assert read_history(path) == {}
    assert [r.get("skipped") is not None for r in _lines(path)] == [False, False, True, True]


def test_samples_are_the_newest_evaluated_date(settings):
    report = realized_outcomes(settings)
    latest = report.latest
    samples = {s.name: s for s in outcome_samples(report)}
    assert set(samples) == {
        "churn_realized_pr_auc",
        "churn_realized_pr_auc_skill",
        "churn_realized_pr_auc_lift",
        "churn_realized_roc_auc",
        "churn_realized_precision_at_k",
        "churn_realized_base_rate",
        "churn_realized_brier",
        "churn_realized_as_of_timestamp_seconds",
        "churn_outcomes_calibration_error",
        "churn_outcomes_calibration_error_threshold",
        "churn_outcomes_churn_rate_ratio",
        "churn_outcomes_calibration_level_off",
    }
    assert samples.pop("churn_outcomes_calibration_error_threshold").labels == {}
    assert all(s.labels == {"model_version": "v2"} for s in samples.values())
    assert samples["churn_realized_pr_auc"].value == latest.pr_auc
    assert samples["churn_realized_pr_auc_skill"].value == latest.pr_auc_skill
    assert samples["churn_realized_pr_auc_lift"].value == latest.pr_auc_lift
    assert samples["churn_realized_brier"].value == latest.brier
    ratio = samples["churn_outcomes_churn_rate_ratio"].value
    assert ratio == pytest.approx(latest.base_rate / latest.expected_rate)
    assert samples["churn_outcomes_calibration_level_off"].value == float(latest.level.off)
    assert samples["churn_realized_as_of_timestamp_seconds"].value == (
        datetime(2026, 3, 12, tzinfo=UTC).timestamp()
    )


def test_printed_table_names_dates_models_and_pending(settings):
    report = realized_outcomes(settings)
    console = Console(record=True, width=200)
    print_outcomes(report, console)
    text = console.export_text()
    assert "2026-03-10" in text and "v1" in text and "v2" in text
    assert f"{report.latest.pr_auc:.3f}" in text
    assert "skill" in text and f"{report.latest.pr_auc_skill:.3f}" in text
    assert "pending 2026-03-13: needs user_daily up to 2026-03-17" in text


def test_each_date_gets_its_calibration_error_bins_and_plot(settings):
    """ECE over ten equal-mass bins of the same arrays, in the record and the history, and a
    reliability PNG per date, redrawn only when the date's figures change."""
    report = realized_outcomes(settings)
    history = read_history(settings.outcomes_history_path)
    for outcome, seed in zip(report.evaluated, (1, 2), strict=True):
        frame = predictions(SCORED, seed=seed)
        y = np.array([expected_label(u, outcome.as_of) for u in frame["user_id"]])
        risk = frame["churn_risk"].to_numpy()
        assert outcome.calibration_error == pytest.approx(expected_calibration_error(y, risk))
        assert outcome.calibration_bins == equal_mass_bins(y, risk).to_dict(orient="records")
        assert [b["count"] for b in outcome.calibration_bins] == [7] * 6 + [6] * 4  # 66 users
        record = history[outcome.as_of.isoformat()]
        assert record["calibration_error"] == outcome.calibration_error
        assert record["calibration_bins"] == outcome.calibration_bins
        png = reliability_path(settings, outcome.as_of)
        assert png == settings.outcomes_dir / RELIABILITY_DIR / f"as_of={outcome.as_of}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
    untouched = reliability_path(settings, D).stat().st_mtime_ns
    reliability_path(settings, date(2026, 3, 12)).unlink()
    realized_outcomes(settings)  # same figures: only the missing plot is drawn again
    assert reliability_path(settings, D).stat().st_mtime_ns == untouched
    assert reliability_path(settings, date(2026, 3, 12)).exists()


def test_samples_carry_the_calibration_error_and_its_threshold(settings):
    strict = settings.model_copy(update={"calibration_error_alert": 0.01})
    report = realized_outcomes(strict)
    samples = {s.name: s.value for s in outcome_samples(report)}
    assert samples["churn_outcomes_calibration_error"] == report.latest.calibration_error
    assert samples["churn_outcomes_calibration_error_threshold"] == 0.01


@pytest.mark.parametrize("alert", [0.01, 0.99])
def test_printed_ece_per_date_and_what_exceeds_the_threshold(settings, alert):
    report = realized_outcomes(settings.model_copy(update={"calibration_error_alert": alert}))
    console = Console(record=True, width=250)
    print_outcomes(report, console)
    text = console.export_text()
    assert "ECE" in text
    for o in report.evaluated:
        assert 0.01 < o.calibration_error < 0.99  # random risks: between the two thresholds
        assert f"{o.calibration_error:.3f}" in text
        exceeds = f"{o.as_of}: calibration error {o.calibration_error:.3f} exceeds"
        assert (exceeds in text) == (alert == 0.01)


def test_a_level_far_off_is_recorded_printed_and_pushed(make_settings, tmp_path):
    """1,000 users at a risk of 0.2 of whom 350 churned: z (350 - 200) / sqrt(160) = 11.9
    and a ratio of 1.75."""
    settings = make_settings(top_k=10)
    labelled = pd.DataFrame({"churned": [1] * 350 + [0] * 650, "churn_risk": 0.2})
    outcome = outcome_of(labelled, D, "v1", settings)
    assert outcome.expected_rate == pytest.approx(0.2)
    assert outcome.calibration_level_z == pytest.approx(150 / np.sqrt(160))
    assert outcome.level.off and outcome.level.ratio == pytest.approx(1.75)
    assert outcome.record()["calibration_level_z"] == outcome.calibration_level_z
    report = OutcomesReport([outcome], [], [], D, tmp_path / HISTORY_FILE, 0.5)
    console = Console(record=True, width=200)
    print_outcomes(report, console)
    assert "0.350 churned against 0.200 expected (1.75x, +11.9 standard deviations" in (
        " ".join(console.export_text().split())
    )
    pushed = {s.name: s.value for s in outcome_samples(report)}
    assert pushed["churn_outcomes_calibration_level_off"] == 1.0
    assert pushed["churn_outcomes_churn_rate_ratio"] == pytest.approx(1.75)
