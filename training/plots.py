"""Validation plots for model comparison, written as PNGs for the model card and the registry.

Figures are built with the object-oriented API on an Agg canvas, never through ``pyplot``:
nothing needs a display, importing this module changes no global backend, and a figure is
freed as soon as it goes out of scope (pyplot would keep every figure until closed).
Each file is written atomically, so a reader never sees a half-written PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from core.atomic import atomic_path
from training.evaluation import reliability_curve

Curves = dict[str, tuple[np.ndarray, np.ndarray]]


def _figure(**kwargs: Any) -> Figure:
    figure = Figure(layout="constrained", **kwargs)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    """Write ``figure`` to ``path`` as PNG atomically; the temp name hides the format, so say it."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    figure.clear()
    return path


def _check(curves: Curves) -> None:
    if not curves:
        raise ValueError("no curves to plot")


def _square_axes(axes: Axes, xlabel: str, ylabel: str, title: str) -> None:
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=xlabel, ylabel=ylabel, title=title)
    axes.set_aspect("equal")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")


def pr_curves(curves: Curves, path: Path, title: str = "Precision-recall (validation)") -> Path:
    """Plot one precision-recall curve per model (name -> (y_true, score)); return ``path``.

    The legend gives each PR-AUC (average precision); the dashed line is the base rate, what
    a random call list would achieve.
    """
    _check(curves)
    figure = _figure(figsize=(6, 6))
    axes = figure.add_subplot()
    for name, (y_true, score) in curves.items():
        precision, recall, _ = precision_recall_curve(y_true, score)
        auc = average_precision_score(y_true, score)
        axes.plot(recall, precision, drawstyle="steps-post", label=f"{name} (PR-AUC {auc:.3f})")
    for rate in sorted({round(float(np.mean(y)), 4) for y, _ in curves.values()}):
        axes.axhline(rate, color="grey", linestyle="--", linewidth=1, label=f"base rate {rate:.3f}")
    _square_axes(axes, "recall", "precision", title)
    return _save(figure, path)


def roc_curves(curves: Curves, path: Path, title: str = "ROC (validation)") -> Path:
    """Plot one ROC curve per model (name -> (y_true, score)) with ROC-AUC in the legend."""
    _check(curves)
    figure = _figure(figsize=(6, 6))
    axes = figure.add_subplot()
    for name, (y_true, score) in curves.items():
        false_positive, true_positive, _ = roc_curve(y_true, score)
        auc = roc_auc_score(y_true, score)
        axes.plot(false_positive, true_positive, label=f"{name} (ROC-AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance (0.500)")
    _square_axes(axes, "false positive rate", "true positive rate", title)
    return _save(figure, path)


def reliability(
    curves: Curves, path: Path, bins: int = 10, title: str = "Calibration (validation)"
) -> Path:
    """Plot observed churn rate against predicted probability per model, Brier in the legend.

    Below, the row count per bin on a log scale: with a 5-15% base rate most rows sit in the
    lowest bins, and a point on the upper curve means little if its bin holds a handful of rows.
    """
    _check(curves)
    figure = _figure(figsize=(6, 7.5))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot(
        [0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated"
    )
    edges = np.linspace(0.0, 1.0, bins + 1)
    for name, (y_true, prob) in curves.items():
        table = reliability_curve(y_true, prob, bins)
        brier = brier_score_loss(y_true, prob)
        (line,) = top.plot(
            table["mean_predicted"],
            table["observed_rate"],
            marker="o",
            label=f"{name} (Brier {brier:.4f})",
        )
        counts = np.zeros(bins)
        counts[np.searchsorted(edges, table["bin_low"])] = table["count"]
        bottom.stairs(counts, edges, color=line.get_color())
    top.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="observed churn rate", title=title)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize="small")
    bottom.set(yscale="log", xlabel="predicted probability", ylabel="rows per bin")
    bottom.grid(alpha=0.3)
    return _save(figure, path)


def feature_importance(
    mean: pd.Series,
    std: pd.Series,
    path: Path,
    top: int = 20,
    title: str = "Feature importance (validation)",
) -> Path:
    """Plot the ``top`` features by mean importance as horizontal bars, ± std, largest on top.

    ``mean`` and ``std`` are indexed by feature name (e.g. permutation importance over
    repeats); a feature missing from ``std`` gets no error bar.
    """
    chosen = mean.dropna().sort_values(ascending=False).head(top)
    if chosen.empty:
        raise ValueError("no feature importances to plot")
    spread = std.reindex(chosen.index).fillna(0.0)
    figure = _figure(figsize=(7, 1.2 + 0.3 * len(chosen)))
    axes = figure.add_subplot()
    positions = np.arange(len(chosen))
    axes.barh(positions, chosen.to_numpy(), xerr=spread.to_numpy(), capsize=3, color="tab:blue")
    axes.set_yticks(positions, [str(name) for name in chosen.index])
    axes.invert_yaxis()
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set(xlabel="importance (mean ± std)", title=title)
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)
