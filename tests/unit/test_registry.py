"""The model registry: versions are written once, the production alias switches atomically."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from served import registry
from served.registry import (
    RegistryError,
    history,
    list_versions,
    load_metadata,
    load_model,
    new_version,
    production,
    rollback,
    save_model,
    set_production,
)

T0 = datetime(2026, 11, 26, 4, 48, tzinfo=UTC)
X = np.random.default_rng(0).normal(size=(20, 3))
Y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)


def fitted_model() -> LogisticRegression:
    return LogisticRegression().fit(X, Y)


def metadata(pr_auc: float = 0.61) -> dict:
    return {
        "created_at": T0.isoformat(),
        "model_kind": "logistic_regression",
        "run": T0.isoformat(),
        "metrics": {"pr_auc": pr_auc, "roc_auc": 0.8, "precision_at_k": 0.5, "brier": 0.1},
        "features": ["logins_7d", "watch_minutes_30d"],
    }


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def three_versions(models_dir: Path) -> list[str]:
    """Versions a, b, c saved in that order."""
    versions = [
        "20261101T000000Z-aaaaaaaa",
        "20261102T000000Z-bbbbbbbb",
        "20261103T000000Z-cccccccc",
    ]
    for version in versions:
        save_model(models_dir, version, fitted_model(), metadata())
    return versions


def test_new_version_is_utc_time_and_fingerprint() -> None:
    assert new_version(T0, "1a2b3c4d5e6f") == "20261126T044800Z-1a2b3c4d"
    berlin = T0.astimezone(timezone(timedelta(hours=1)))
    assert new_version(berlin, "1a2b3c4d5e6f") == "20261126T044800Z-1a2b3c4d"
    with pytest.raises(ValueError, match="timezone-aware"):
        new_version(T0.replace(tzinfo=None), "1a2b3c4d")
    with pytest.raises(ValueError, match="fingerprint"):
        new_version(T0, "abc")


def test_save_load_round_trip(models_dir: Path, tmp_path: Path) -> None:
    plot = tmp_path / "pr_curve.png"
    plot.write_bytes(b"\x89PNG fake")
    model = fitted_model()
    version = new_version(T0, "1a2b3c4d5e6f")

    path = save_model(models_dir, version, model, metadata(), files={"pr_curve.png": plot})

    assert path == models_dir / version
    assert sorted(p.name for p in path.iterdir()) == [
        "metadata.json",
        "model.joblib",
        "pr_curve.png",
    ]
    assert (path / "pr_curve.png").read_bytes() == plot.read_bytes()
    loaded, meta = load_model(models_dir, version)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert meta == metadata() | {"version": version}
    assert load_metadata(models_dir, version) == meta
    # Only the version and the index (and its lock file): no temporary directories left behind.
    assert sorted(p.name for p in models_dir.iterdir() if not p.name.endswith(".lock")) == [
        version,
        "index.jsonl",
    ]


def test_an_existing_version_is_never_overwritten(models_dir: Path) -> None:
    version = new_version(T0, "1a2b3c4d")
    save_model(models_dir, version, fitted_model(), metadata(pr_auc=0.61))
    before = (models_dir / version / "model.joblib").read_bytes()

    with pytest.raises(RegistryError, match="already exists"):
        save_model(models_dir, version, LogisticRegression(C=0.1).fit(X, Y), metadata(pr_auc=0.9))

    assert (models_dir / version / "model.joblib").read_bytes() == before
    assert load_metadata(models_dir, version)["metrics"]["pr_auc"] == 0.61
    assert len(list_versions(models_dir)) == 1


def test_a_failed_save_leaves_nothing(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_dump(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(joblib, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        save_model(models_dir, "v1", fitted_model(), metadata())

    assert list(models_dir.iterdir()) == []
    assert list_versions(models_dir) == []


def test_dates_in_metadata_are_stored_as_iso_strings(models_dir: Path) -> None:
    save_model(models_dir, "v1", fitted_model(), metadata() | {"created_at": T0})
    assert load_metadata(models_dir, "v1")["created_at"] == T0.isoformat()
    assert list_versions(models_dir)[0]["created_at"] == T0.isoformat()


def test_index_lines_are_appended_in_order(models_dir: Path, three_versions: list[str]) -> None:
    assert list_versions(models_dir) == [
        {
            "version": version,
            "created_at": T0.isoformat(),
            "model_kind": "logistic_regression",
            "run": T0.isoformat(),  # what `churn promote` finds a training run's versions by
            "metrics": {"pr_auc": 0.61, "roc_auc": 0.8, "precision_at_k": 0.5},
        }
        for version in three_versions
    ]
    assert len((models_dir / "index.jsonl").read_text().splitlines()) == 3


def test_empty_registry(models_dir: Path) -> None:
    assert list_versions(models_dir) == []
    assert production(models_dir) is None
    assert history(models_dir) == []


def test_set_production_and_history(models_dir: Path, three_versions: list[str]) -> None:
    a, b, _ = three_versions
    set_production(models_dir, a, "first model", now=T0)
    assert production(models_dir) == a
    set_production(models_dir, b, "beats a", now=T0)
    assert production(models_dir) == b

    alias = json.loads((models_dir / "production.json").read_text())
    assert alias["version"] == b
    assert alias["previous"] == a
    assert alias["reason"] == "beats a"
    assert alias["promoted_at"] == T0.isoformat()
    assert [
        (h["action"], h["version"], h["replaced"], h["reason"]) for h in history(models_dir)
    ] == [
        ("promote", a, None, "first model"),
        ("promote", b, a, "beats a"),
    ]


def test_promoting_the_production_version_again_is_refused(
    models_dir: Path, three_versions: list[str]
) -> None:
    set_production(models_dir, three_versions[0], "first")
    with pytest.raises(RegistryError, match="already production"):
        set_production(models_dir, three_versions[0], "again")
    assert len(history(models_dir)) == 1


def test_rollback_walks_back_along_the_history(models_dir: Path, three_versions: list[str]) -> None:
    a, b, c = three_versions
    for version in three_versions:
        set_production(models_dir, version, f"promote {version}")

    assert rollback(models_dir, "c misbehaves") == b
    assert production(models_dir) == b
    assert rollback(models_dir) == a
    assert production(models_dir) == a
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(models_dir)
    assert production(models_dir) == a

    # A promotion after a rollback pushes onto what is left: rolling back returns to a.
    set_production(models_dir, c, "fixed c")
    assert rollback(models_dir) == a
    assert [(h["action"], h["version"], h["replaced"]) for h in history(models_dir)] == [
        ("promote", a, None),
        ("promote", b, a),
        ("promote", c, b),
        ("rollback", b, c),
        ("rollback", a, b),
        ("promote", c, a),
        ("rollback", a, c),
    ]


def test_rollback_without_production(models_dir: Path) -> None:
    with pytest.raises(RegistryError, match="no production model"):
        rollback(models_dir)


@pytest.mark.parametrize("failing", ["os.replace", "fsync"])
def test_an_interrupted_switch_leaves_the_alias_intact(
    models_dir: Path, three_versions: list[str], monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    a, b, _ = three_versions
    set_production(models_dir, a, "first")
    alias = (models_dir / "production.json").read_bytes()
    promotions = (models_dir / "promotions.jsonl").read_bytes()
    listing = sorted(p.name for p in models_dir.iterdir())

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, failing.removeprefix("os."), crash)
    with pytest.raises(OSError, match="power cut"):
        set_production(models_dir, b, "second")
    monkeypatch.undo()

    assert (models_dir / "production.json").read_bytes() == alias
    assert (models_dir / "promotions.jsonl").read_bytes() == promotions
    assert sorted(p.name for p in models_dir.iterdir()) == listing
    assert production(models_dir) == a


def test_unknown_version(models_dir: Path, three_versions: list[str]) -> None:
    for call in (
        lambda: load_model(models_dir, "20990101T000000Z-00000000"),
        lambda: load_metadata(models_dir, "20990101T000000Z-00000000"),
        lambda: set_production(models_dir, "20990101T000000Z-00000000", "typo"),
    ):
        with pytest.raises(RegistryError, match="unknown model version 20990101T000000Z-00000000"):
            call()
    with pytest.raises(RegistryError, match="invalid model version"):
        load_model(models_dir, "../elsewhere")
    assert production(models_dir) is None


def test_corrupt_model_file_is_named(models_dir: Path, three_versions: list[str]) -> None:
    path = models_dir / three_versions[0] / "model.joblib"
    path.write_bytes(b"not a pickle")
    with pytest.raises(RegistryError, match=re.escape(f"cannot load model file {path}")):
        load_model(models_dir, three_versions[0])


def test_corrupt_alias_and_index_are_named(models_dir: Path, three_versions: list[str]) -> None:
    (models_dir / "production.json").write_text("{half")
    with pytest.raises(RegistryError, match=re.escape(str(models_dir / "production.json"))):
        production(models_dir)
    index = models_dir / "index.jsonl"
    index.write_text(index.read_text().replace("}\n", "}garbage\n", 1))
    with pytest.raises(RegistryError, match=re.escape(f"{index}, line 1")):
        list_versions(models_dir)


def test_an_unfinished_append_is_not_history(models_dir: Path, three_versions: list[str]) -> None:
    """A crash mid-append leaves a line without its newline: ignored, then replaced."""
    index = models_dir / "index.jsonl"
    with index.open("a") as handle:
        handle.write('{"version": "torn')
    assert [line["version"] for line in list_versions(models_dir)] == three_versions

    save_model(models_dir, "20261104T000000Z-dddddddd", fitted_model(), metadata())
    assert [line["version"] for line in list_versions(models_dir)] == [
        *three_versions,
        "20261104T000000Z-dddddddd",
    ]
    assert "torn" not in index.read_text()


def test_extra_files_cannot_shadow_the_model(models_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    fake.write_bytes(b"x")
    with pytest.raises(RegistryError, match=re.escape("'model.joblib'")):
        save_model(models_dir, "v1", fitted_model(), metadata(), files={"model.joblib": fake})
    assert registry.production(models_dir) is None
