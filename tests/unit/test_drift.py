"""The drift job on hand-written batch directories and a registry of small fitted models."""

from __future__ import annotations

import io
import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from sklearn.linear_model import LogisticRegression

from batch.outputs import BATCH_PREFIX, FEATURES_FILE, PREDICTIONS_FILE, RUN_FILE, batch_dir
from core.atomic import write_json, write_parquet
from core.settings import Settings, get_settings
from feature_repo.spec import ageing_features
from monitor.drift import (
    EXIT_CODES,
    SCORE_LABEL,
    drift_history,
    drift_report,
    drift_samples,
    ignored_features,
    print_drift,
    write_drift_report,
)
from served.registry import RegistryError, save_model, set_production
from training.references import reference_bins

NUMERIC = ["watch_minutes_7d", "logins_7d", "tenure_days"]
CATEGORICAL = ["acquisition_channel", "plan"]
VERSION = "20261101T000000Z-aaaaaaaa"
OTHER_VERSION = "20261110T000000Z-bbbbbbbb"
DAY = date(2026, 11, 20)
ALERTED = {"watch_minutes_7d", "acquisition_channel"}


def users(n: int, seed: int, drift: bool = False) -> pd.DataFrame:
    """Synthetic users; ``drift``: 50% less watch time and a new acquisition mix."""
    rng = np.random.default_rng(seed)
    watch = rng.gamma(2.0, 40.0, n) * (0.5 if drift else 1.0)
    watch[rng.random(n) < 0.05] = np.nan
    mix = (["ads", "organic", "referral", "tiktok"], [0.2, 0.1, 0.1, 0.6] if drift else None)
    channels = ["ads", "organic", "referral"]
    return pd.DataFrame(
        {
            "user_id": [f"u{seed}_{i}" for i in range(n)],
            "watch_minutes_7d": watch,
            "logins_7d": rng.poisson(4, n).astype(float),
            "tenure_days": rng.integers(1, 900, n),
            "acquisition_channel": rng.choice(mix[0], n, p=mix[1])
            if drift
            else rng.choice(channels, n, p=[0.5, 0.3, 0.2]),
            "plan": rng.choice(["free", "paid"], n, p=[0.65, 0.35]),
        }
    )


def scores(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).beta(1.5, 8.0, n)


def save_version(settings: Settings, version: str, frame: pd.DataFrame, score: np.ndarray) -> None:
    """A registry version whose drift references describe ``frame`` and ``score``."""
    x = frame[NUMERIC].fillna(0).to_numpy()
    model = LogisticRegression().fit(x, (x[:, 1] > 4).astype(int))
    metadata = {
        "version": version,
        "model_kind": "logistic_regression",
        "created_at": "2026-11-01T00:00:00+00:00",
        "feature_service": "churn_model_v1",
        "feature_refs": [f"user_activity:{name}" for name in NUMERIC + CATEGORICAL],
        "numeric_features": NUMERIC,
        "categorical_features": CATEGORICAL,
        "reference_bins": reference_bins(frame, NUMERIC, CATEGORICAL),
        "score_reference_bins": reference_bins(pd.DataFrame({"score": score}), ["score"], [])[
            "score"
        ],
    }
    save_model(settings.models_dir, version, model, metadata)


def write_batch(
    settings: Settings, day: date, frame: pd.DataFrame, score: np.ndarray, version: str = VERSION
) -> Path:
    """A batch directory as the nightly job leaves it."""
    directory = batch_dir(settings.predictions_dir, day)
    order = np.argsort(-score)
    predictions = pd.DataFrame(
        {
            "user_id": frame["user_id"],
            "churn_risk": score,
            "risk_band": np.where(score >= 0.35, "high", np.where(score >= 0.15, "medium", "low")),
            "rank": np.argsort(order) + 1,
            "model_version": version,
            "features_as_of": pd.Timestamp(day, tz="UTC"),
        }
    )
    write_parquet(predictions, directory / PREDICTIONS_FILE)
    write_parquet(frame, directory / FEATURES_FILE)
    write_json({"as_of": day.isoformat(), "model_version": version}, directory / RUN_FILE)
    return directory


@pytest.fixture
def settings(make_settings) -> Settings:
    settings = make_settings()
    save_version(settings, VERSION, users(5000, seed=1), scores(5000, seed=1))
    return settings


def test_the_same_distribution_is_ok(settings: Settings) -> None:
    write_batch(settings, DAY, users(4000, seed=2), scores(4000, seed=2))

    report = drift_report(settings, DAY)

    assert (report.as_of, report.model_version, report.rows) == (DAY, VERSION, 4000)
    assert report.status == "ok"
    assert set(report.features) == set(NUMERIC + CATEGORICAL)
    assert all(f.psi < 0.1 and f.status == "ok" for f in report.features.values())
    assert {name: f.kind for name, f in report.features.items()} == {
        **dict.fromkeys(NUMERIC, "numeric"),
        **dict.fromkeys(CATEGORICAL, "categorical"),
    }
    assert report.score_psi < 0.1
    assert report.thresholds == {"warn": 0.1, "alert": 0.25}
    assert EXIT_CODES[report.status] == 0


def test_shifted_features_alert_and_the_others_stay_ok(settings: Settings) -> None:
    write_batch(settings, DAY, users(4000, seed=2, drift=True), scores(4000, seed=2))

    report = drift_report(settings, DAY)

    statuses = {name: f.status for name, f in report.features.items()}
    assert statuses == {
        "watch_minutes_7d": "alert",
        "acquisition_channel": "alert",
        "logins_7d": "ok",
        "tenure_days": "ok",
        "plan": "ok",
    }
    assert report.features["watch_minutes_7d"].psi >= 0.25
    assert report.score_status == "ok"
    assert report.status == "alert"
    assert EXIT_CODES[report.status] == 20


def test_a_drifted_score_alone_raises_the_status(settings: Settings) -> None:
    # Risks 2.5 times as high (still probabilities: the batch reader checks them).
    write_batch(settings, DAY, users(4000, seed=2), np.minimum(scores(4000, seed=2) * 2.5, 1.0))

    report = drift_report(settings, DAY)

    assert all(f.status == "ok" for f in report.features.values())
    assert report.score_psi >= 0.25
    assert report.score_status == report.status == "alert"


def test_warn_between_the_thresholds(make_settings, settings: Settings) -> None:
    write_batch(settings, DAY, users(4000, seed=2, drift=True), scores(4000, seed=2))
    psi = drift_report(settings, DAY).features["watch_minutes_7d"].psi

    lenient = make_settings(psi_warn=psi / 2, psi_alert=psi * 2)
    report = drift_report(lenient, DAY)

    assert report.features["watch_minutes_7d"].status == "warn"
    assert report.thresholds == {"warn": psi / 2, "alert": psi * 2}
    assert EXIT_CODES["warn"] == 10


def test_the_reference_is_the_scoring_model_not_production(settings: Settings) -> None:
    # Production is now a model trained on the drifted world: the batch scored by the
    # old model must still be judged against the old model's reference.
    save_version(settings, OTHER_VERSION, users(5000, seed=3, drift=True), scores(5000, seed=3))
    set_production(settings.models_dir, OTHER_VERSION, "newer")
    write_batch(settings, DAY, users(4000, seed=2), scores(4000, seed=2), version=VERSION)

    report = drift_report(settings, DAY)

    assert report.model_version == VERSION
    assert report.status == "ok"


def test_the_newest_batch_is_the_default(settings: Settings) -> None:
    write_batch(settings, date(2026, 11, 19), users(2000, seed=2), scores(2000, seed=2))
    write_batch(settings, DAY, users(3000, seed=4, drift=True), scores(3000, seed=4))
    # The batch job's staging directory is hidden, a bad name skipped: never a batch,
    # however new (the listing itself: tests/unit/test_batch_outputs.py).
    (settings.predictions_dir / f".{BATCH_PREFIX}2026-11-21.tmp").mkdir()
    (settings.predictions_dir / f"{BATCH_PREFIX}2026-11-22.bak").mkdir()

    report = drift_report(settings)
    assert (report.as_of, report.rows, report.status) == (DAY, 3000, "alert")
    assert drift_report(settings, date(2026, 11, 19)).status == "ok"


def test_no_batch_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(FileNotFoundError, match=r"no batch predictions in .*churn batch score"):
        drift_report(settings)
    write_batch(settings, DAY, users(100, seed=2), scores(100, seed=2))
    with pytest.raises(
        FileNotFoundError, match=r"no batch predictions for 2026-11-19 .*2026-11-20"
    ):
        drift_report(settings, date(2026, 11, 19))


def test_an_incomplete_batch_names_the_missing_file(settings: Settings) -> None:
    directory = write_batch(settings, DAY, users(100, seed=2), scores(100, seed=2))
    (directory / FEATURES_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(FEATURES_FILE)} is missing"):
        drift_report(settings)


@pytest.mark.parametrize("name", [PREDICTIONS_FILE, FEATURES_FILE])
def test_a_corrupt_parquet_file_is_named(settings: Settings, name: str) -> None:
    directory = write_batch(settings, DAY, users(100, seed=2), scores(100, seed=2))
    (directory / name).write_bytes(b"PAR1 this is not parquet")
    where = re.escape(f"{batch_dir(settings.predictions_dir, DAY).name}/{name}")
    with pytest.raises(ValueError, match=rf"cannot read .*{where}"):
        drift_report(settings)


def test_missing_columns_and_unknown_models_are_named(settings: Settings) -> None:
    frame = users(100, seed=2)
    directory = write_batch(settings, DAY, frame, scores(100, seed=2))
    write_parquet(frame.drop(columns=["plan"]), directory / FEATURES_FILE)
    lacks = re.escape(f"{FEATURES_FILE} lacks the columns ['plan']")
    with pytest.raises(ValueError, match=lacks):
        drift_report(settings)

    write_batch(settings, DAY, frame, scores(100, seed=2), version="20991231T000000Z-cccccccc")
    with pytest.raises(RegistryError, match="unknown model version 20991231T000000Z-cccccccc"):
        drift_report(settings)


def test_report_files_and_idempotent_history(settings: Settings) -> None:
    write_batch(settings, date(2026, 11, 19), users(2000, seed=2), scores(2000, seed=2))
    write_batch(settings, DAY, users(2000, seed=4, drift=True), scores(2000, seed=4))
    out = settings.drift_dir

    report = drift_report(settings, DAY)
    path = write_drift_report(report, settings)

    assert path == out / "as_of=2026-11-20.json"
    saved = json.loads(path.read_text())
    assert saved["as_of"] == "2026-11-20"
    assert saved["status"] == "alert"
    assert saved["model_version"] == VERSION
    assert saved["features"]["watch_minutes_7d"]["status"] == "alert"
    assert saved["features"]["watch_minutes_7d"]["psi"] == report.features["watch_minutes_7d"].psi
    assert saved["score_psi"] == report.score_psi
    assert (out / "as_of=2026-11-20.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    write_drift_report(drift_report(settings, date(2026, 11, 19)), settings)
    write_drift_report(drift_report(settings, DAY), settings)  # a re-run of the same date

    history = drift_history(settings)
    assert [line["as_of"] for line in history] == ["2026-11-19", "2026-11-20"]
    assert history[1]["status"] == "alert"
    by_psi = sorted(report.features, key=lambda name: -report.features[name].psi)
    assert history[1]["alert_features"] == [n for n in by_psi if n in ALERTED]
    assert sorted(history[1]["alert_features"]) == sorted(ALERTED)
    assert history[0]["status"] == "ok" and history[0]["alert_features"] == []
    # Append-only: the re-run is a line of its own, and the newest line of a date counts.
    lines = [json.loads(line) for line in settings.drift_history_path.read_text().splitlines()]
    assert [line["as_of"] for line in lines] == ["2026-11-20", "2026-11-19", "2026-11-20"]
    assert history == [lines[1], lines[2]]
    assert history[1]["score_status"] == report.score_status
    # Nothing half-written left behind.
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_samples_name_every_gauge(settings: Settings) -> None:
    write_batch(settings, DAY, users(2000, seed=2, drift=True), scores(2000, seed=2))
    report = drift_report(settings, DAY)

    samples = drift_samples(report)

    per_feature = {s.labels["feature"]: s.value for s in samples if s.name == "churn_feature_psi"}
    assert per_feature == {name: f.psi for name, f in report.features.items()}
    (score,) = [s for s in samples if s.name == "churn_score_psi"]
    (status,) = [s for s in samples if s.name == "churn_drift_status"]
    assert (score.value, score.labels) == (report.score_psi, {})
    assert (status.value, status.labels) == (2.0, {})
    assert all(s.name.startswith("churn_") and s.help for s in samples)


def test_print_lists_the_worst_first(settings: Settings) -> None:
    write_batch(settings, DAY, users(2000, seed=2, drift=True), scores(2000, seed=2))
    report = drift_report(settings, DAY)
    buffer = io.StringIO()

    print_drift(report, Console(file=buffer, width=120, color_system=None))

    text = buffer.getvalue()
    assert "Drift of the batch of 2026-11-20: alert" in text
    names = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    alerted = sorted(ALERTED, key=lambda name: -report.features[name].psi)
    assert names[:2] == alerted
    assert sorted(names[2:]) == sorted([SCORE_LABEL, *(set(report.features) - ALERTED)])
    rest = {name: f.psi for name, f in report.features.items()} | {SCORE_LABEL: report.score_psi}
    assert [rest[name] for name in names[2:]] == sorted(
        (rest[name] for name in names[2:]), reverse=True
    )


def test_features_that_grow_with_time_are_shown_but_not_counted(settings: Settings) -> None:
    """Tenure drifts by construction (the reference is months old): it must not alert."""
    older = users(2000, seed=2)
    older["tenure_days"] = older["tenure_days"] + 400  # the same users, a year on
    write_batch(settings, DAY, older, scores(2000, seed=2))
    counted = settings.model_copy(update={"drift_ignore_features": ()})
    assert drift_report(counted, DAY).status == "alert"

    report = drift_report(settings, DAY)  # the default leaves tenure_days out of the status
    assert report.features["tenure_days"].status == "alert"  # still measured and shown
    assert report.status == "ok"
    assert report.not_counted == ("tenure_days",)
    assert report.summary()["alert_features"] == []


def test_unset_the_features_not_counted_are_the_spec_s_ageing_ones(make_settings) -> None:
    """The setting holds no copy of feature names: unset (or set empty, as ``as_env`` renders
    unset for a subprocess) it means ``feature_repo.spec.ageing_features``."""
    default = make_settings()
    assert default.drift_ignore_features is None
    assert ignored_features(default) == ageing_features()
    again = get_settings(
        **{k.removeprefix("CHURN_").lower(): v for k, v in default.as_env().items()}
    )
    assert again.drift_ignore_features is None
    chosen = make_settings(drift_ignore_features="logins_7d, tenure_days")
    assert ignored_features(chosen) == ("logins_7d", "tenure_days")
