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

ECE is absolute, so it misses a wrong level at a low base rate: a model expecting 8.4 %
churn on a night that churned 5.3 % (+57 %, seen on a 2k-user world) has an ECE of about
0.03, under any threshold that stays quiet on healthy nights. ``calibration_level`` checks
calibration in the large on its own: the night's churners against the sum of the predicted
risks, off when both far outside the label noise (``LEVEL_Z`` standard deviations) and
large (the realized rate outside ``LEVEL_RATIO`` times the expected either way). The
estimate (``monitor.cbpe``) carries the model's level over to tonight, so a level that is
off is off in every estimated figure too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from core.atomic import atomic_path

BINS = 10
BIN_COLUMNS = ("bin_low", "bin_high", "mean_predicted", "observed_rate", "count")
# A level is off when the churners are this many label-noise deviations from the expected
# count and the realized rate is beyond this ratio of the expected, either way. Healthy
# nights of seeded 3,000-user worlds reach |z| 3.1 (seeds 5-7, baseline and drift: the
# world's own churn rate wanders); the concept world gives 15-20 at a ratio of about 2, and
# the 2k-user product models whose level missed by -30 % and +57 % reach 5.4 and 4.6.
LEVEL_Z = 4.0
LEVEL_RATIO = 1.25


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


@dataclass(frozen=True)
class Level:
    """Calibration in the large of one night: its churn rate against the mean predicted."""

    expected: float  # mean predicted risk
    observed: float  # realized churn rate
    z: float  # (churners - Σ p) / sqrt(Σ p (1 - p)): deviations of the label noise

    @property
    def ratio(self) -> float:
        """Realized rate over expected (inf when nothing was expected and someone churned)."""
        if self.expected == 0:
            return 1.0 if self.observed == 0 else float("inf")
        return self.observed / self.expected

    @property
    def off(self) -> bool:
        """Far outside the label noise and large (module docstring)."""
        return abs(self.z) > LEVEL_Z and not 1 / LEVEL_RATIO <= self.ratio <= LEVEL_RATIO


def calibration_level(y_true: ArrayLike, prob: ArrayLike) -> Level:
    """The night's ``Level``. Risks that leave no noise (every p 0 or 1) give z 0 when
    they came true and ±inf when they did not."""
    table = equal_mass_bins(y_true, prob, bins=1)  # the checks, and the two means
    p = np.asarray(prob, dtype=float)
    noise = float(np.sqrt((p * (1 - p)).sum()))
    gap = (float(table["observed_rate"].iloc[0]) - float(table["mean_predicted"].iloc[0])) * p.size
    return Level(
        expected=float(table["mean_predicted"].iloc[0]),
        observed=float(table["observed_rate"].iloc[0]),
        z=gap / noise if noise > 0 else math.copysign(math.inf, gap) if gap else 0.0,
    )


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
