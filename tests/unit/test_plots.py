"""Validation plots: each writes a real PNG atomically, and no figure outlives its call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from training import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _curves() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.1).astype(int)
    model = np.clip(0.08 + 0.35 * y + rng.normal(0, 0.12, 400), 0, 1)
    baseline = np.clip(0.1 + 0.1 * y + rng.normal(0, 0.15, 400), 0, 1)
    return {"gradient boosting": (y, model), "logistic baseline": (y, baseline)}


def _importance() -> tuple[pd.Series, pd.Series]:
    names = [f"feature_{i}_7d" for i in range(30)]
    rng = np.random.default_rng(4)
    mean = pd.Series(rng.exponential(0.01, 30), index=names)
    std = pd.Series(rng.uniform(0, 0.003, 30), index=names)
    return mean, std


PLOTTERS: dict[str, Callable[[Path], Path]] = {
    "pr_curves": lambda path: plots.pr_curves(_curves(), path),
    "roc_curves": lambda path: plots.roc_curves(_curves(), path),
    "reliability": lambda path: plots.reliability(_curves(), path, bins=10),
    "feature_importance": lambda path: plots.feature_importance(*_importance(), path, top=20),
}


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000  # axes, curves and a legend, not a blank canvas


@pytest.mark.parametrize("name", PLOTTERS)
def test_writes_a_png_and_returns_its_path(name: str, tmp_path: Path) -> None:
    path = tmp_path / "reports" / f"{name}.png"  # parent does not exist yet
    assert PLOTTERS[name](path) == path
    _assert_png(path)


@pytest.mark.parametrize("name", PLOTTERS)
def test_overwrite_replaces_the_file_and_leaves_no_temp_files(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.png"
    path.write_bytes(b"stale")
    PLOTTERS[name](path)
    _assert_png(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_many_calls_leave_no_open_figures(tmp_path: Path) -> None:
    before = plt.get_fignums()
    for i in range(5):
        for name, plot in PLOTTERS.items():
            plot(tmp_path / f"{name}_{i}.png")
    assert plt.get_fignums() == before


def test_feature_importance_accepts_std_with_missing_features(tmp_path: Path) -> None:
    mean, std = _importance()
    _assert_png(plots.feature_importance(mean, std.iloc[:5], tmp_path / "fi.png", top=10))


@pytest.mark.parametrize(
    "call",
    [
        lambda path: plots.pr_curves({}, path),
        lambda path: plots.roc_curves({}, path),
        lambda path: plots.reliability({}, path),
        lambda path: plots.feature_importance(pd.Series(dtype=float), pd.Series(dtype=float), path),
    ],
)
def test_nothing_to_plot_raises_and_writes_nothing(
    call: Callable[[Path], Path], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="no"):
        call(tmp_path / "empty.png")
    assert list(tmp_path.iterdir()) == []
