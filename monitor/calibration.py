"""Calibration of realized nights: does a predicted 20 % risk come true for 20 % of users?

The performance estimate (CBPE) reads expected precision and recall off the probabilities
themselves, so it is right only while they are calibrated. Once a night's labels arrive,
its expected calibration error (ECE) says whether they still are.

ECE here is over **equal-mass** bins: the night's users sorted by predicted risk and cut
into ``bins`` groups of (nearly) equal size, then Σ (count / n) · |mean predicted −
observed rate|. Equal-mass, not equal-width, because churn risks crowd into a few low
bins: equal-width bins leave the tail with a handful of users whose noise would swing the
figure, and one crowded bin hiding a miscalibration inside it. Weighted by bin size, so
the figure is the mean gap a user of the night sees. Users with equal risks may fall in
adjacent bins; the stable sort keeps the cut the same on the same input.

Noise sets a floor: with n users per bin, a perfectly calibrated model still shows a
gap of about sqrt(p (1 − p) / n) per bin (0.02 at p = 0.3, n = 500), which is why the
alert threshold (``CHURN_CALIBRATION_ERROR_ALERT``) sits well above a healthy model's ECE.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from core.atomic import atomic_path

BINS = 10
BIN_COLUMNS = ("bin_low", "bin_high", "mean_predicted", "observed_rate", "count")


def equal_mass_bins(y_true: ArrayLike, prob: ArrayLike, bins: int = BINS) -> pd.DataFrame:
    """Observed rate against mean predicted risk in ``bins`` groups of equal size.

    Rows sorted by risk (stable), cut by ``numpy.array_split``: sizes differ by at most
    one, the larger groups first; fewer rows than bins give one bin per row. Columns
    (``BIN_COLUMNS``): the lowest and highest risk in the bin, its mean, the observed
    rate, the count.
    """
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(prob, dtype=float)
    if y.shape != p.shape or y.ndim != 1 or y.size == 0:
        raise ValueError(
            f"need two 1-d arrays of the same non-zero length, got {y.shape}, {p.shape}"
        )
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1]")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, min(bins, y.size))
    return pd.DataFrame(
        {
            "bin_low": [float(p[g].min()) for g in groups],
            "bin_high": [float(p[g].max()) for g in groups],
            "mean_predicted": [float(p[g].mean()) for g in groups],
            "observed_rate": [float(y[g].mean()) for g in groups],
            "count": [int(g.size) for g in groups],
        },
        columns=list(BIN_COLUMNS),
    )


def calibration_error(table: pd.DataFrame) -> float:
    """ECE of a bin table (``equal_mass_bins``): Σ count / n · |mean predicted − observed|."""
    weights = table["count"] / table["count"].sum()
    return float((weights * (table["mean_predicted"] - table["observed_rate"]).abs()).sum())


def expected_calibration_error(y_true: ArrayLike, prob: ArrayLike, bins: int = BINS) -> float:
    """ECE over ``bins`` equal-mass bins (module docstring): 0 for a calibrated night."""
    return calibration_error(equal_mass_bins(y_true, prob, bins))


def reliability_png(table: pd.DataFrame, error: float, threshold: float, path: Path,
                    title: str) -> Path:  # fmt: skip
    """The reliability plot of a bin table: mean predicted against observed rate per bin,
    dot area by count, the diagonal a calibrated model lies on; return ``path``.

    Written atomically, on an Agg canvas (as ``monitor.charts``): no display, no pyplot.
    """
    figure = Figure(layout="constrained", figsize=(5.5, 5.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="calibrated")
    sizes = 20 + 200 * table["count"] / max(int(table["count"].max()), 1)
    color = "tab:red" if error > threshold else "tab:blue"
    axes.plot(table["mean_predicted"], table["observed_rate"], color=color, linewidth=1)
    axes.scatter(table["mean_predicted"], table["observed_rate"], s=sizes, color=color,
                 label=f"ECE {error:.3f} (alert > {threshold:g})")  # fmt: skip
    top = max(1e-3, float(table[["mean_predicted", "observed_rate"]].to_numpy().max()))
    limit = min(1.0, top * 1.1)
    axes.set(xlim=(0, limit), ylim=(0, limit), xlabel="mean predicted risk (equal-mass bins)",
             ylabel="observed churn rate", title=title)  # fmt: skip
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    figure.clear()
    return path
