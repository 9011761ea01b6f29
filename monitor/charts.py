"""Drift, uplift and estimate charts as PNGs next to their reports, built as training/plots.py builds its figures.

Object-oriented API on an Agg canvas, never ``pyplot``: no display needed, no global backend
switched, nothing kept alive between nightly runs. Written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.atomic import atomic_path

FLOOR = 1e-3  # the axis starts here: a PSI below it is no drift worth a bar
STATUS_COLORS = {
    "ok": "tab:green",
    "warn": "tab:orange",
    "alert": "tab:red",
    "not counted": "tab:gray",
}


def psi_bars(
    values: Mapping[str, float],
    statuses: Mapping[str, str],
    warn: float,
    alert: float,
    path: Path,
    title: str = "Drift (PSI against the training reference)",
) -> Path:
    """Bar per name (``values``: name -> PSI), largest first, colored by its status; return ``path``.

    Dashed lines mark the warn and alert thresholds, so a bar's status reads off the chart.
    The axis is logarithmic from ``FLOOR`` up: smaller values draw no bar.
    """
    if not values:
        raise ValueError("no PSI values to plot")
    names = sorted(values, key=lambda name: (-values[name], name))
    heights = np.array([values[name] for name in names], dtype=float)
    figure = Figure(layout="constrained", figsize=(max(7.0, 1.5 + 0.28 * len(names)), 5.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = np.arange(len(names))
    axes.bar(positions, heights, color=[STATUS_COLORS[statuses[name]] for name in names])
    labels = [
        f"{name} (not counted)" if statuses[name] == "not counted" else name for name in names
    ]
    axes.set_xticks(positions, labels, rotation=70, ha="right", fontsize="small")
    for level, label in ((warn, "warn"), (alert, "alert")):
        axes.axhline(
            level,
            color=STATUS_COLORS[label],
            linestyle="--",
            linewidth=1,
            label=f"{label} ≥ {level:g}",
        )
    # Log scale: one category gone wild (PSI 5) must not flatten the thresholds into one line.
    top = max(float(heights.max()), alert) * 2
    axes.set(yscale="log", ylim=(FLOOR, top), ylabel="PSI (log scale)", title=title)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    figure.clear()
    return path


def uplift_bars(strata: Sequence, path: Path, title: str) -> Path:
    """Churn rate of each arm per risk band (Wilson 95 % bars), and contact - holdout with its
    95 % interval per band, on one figure; return ``path``. ``strata``: ``monitor.uplift.Stratum``."""
    figure = Figure(layout="constrained", figsize=(10.0, 4.5))
    FigureCanvasAgg(figure)
    rates, differences = figure.subplots(1, 2)
    positions = np.arange(len(strata))
    for offset, arm, color in ((-0.2, "contact", "tab:blue"), (0.2, "holdout", "tab:gray")):
        values = [getattr(s, arm) for s in strata]
        mid = np.array([v.rate for v in values], dtype=float)
        errors = np.array([[v.rate - v.low, v.high - v.rate] for v in values], dtype=float).T
        rates.bar(positions + offset, mid, width=0.4, color=color, label=arm,
                  yerr=errors, capsize=3)  # fmt: skip
    labels = [s.band for s in strata]
    rates.set_xticks(positions, labels)
    rates.set(ylabel="realized churn rate", ylim=(0, 1), title="Churn by arm (95 %)")
    rates.legend(loc="upper right", fontsize="small")
    measured = [(i, s.effect) for i, s in enumerate(strata) if s.effect is not None]
    for i, found in measured:
        color = "tab:green" if found.high < 0 else "tab:red" if found.low > 0 else "tab:orange"
        differences.errorbar(i, found.difference, yerr=[[found.difference - found.low],
                             [found.high - found.difference]], fmt="o", color=color, capsize=4)  # fmt: skip
    differences.axhline(0, color="black", linewidth=1)
    differences.set_xticks(positions, labels)
    differences.set_xlim(-0.5, len(strata) - 0.5)
    differences.set(
        ylabel="contact − holdout", title="Uplift (95 %); below 0: outreach keeps users"
    )
    differences.grid(axis="y", alpha=0.3)
    figure.suptitle(title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    figure.clear()
    return path


def estimate_lines(
    series: Mapping[str, Mapping[str, tuple]], floor: float, path: Path, title: str
) -> Path:
    """One panel per figure (``series``: figure -> night -> (estimate, lower, upper, realized)):
    the estimate night by night with its 5-95 % band, the realized figure where the horizon
    has passed, and the skill floor; return ``path``."""
    figure = Figure(layout="constrained", figsize=(11.0, 3.6 * len(series)))
    FigureCanvasAgg(figure)
    for axes, (name, nights) in zip(figure.subplots(len(series), 1, squeeze=False)[:, 0],
                                    series.items(), strict=True):  # fmt: skip
        days = sorted(nights)
        positions = np.arange(len(days))
        estimate = np.array([nights[d][0] for d in days], dtype=float)
        axes.plot(positions, estimate, "o-", color="tab:blue", label="estimated")
        banded = [i for i, d in enumerate(days) if nights[d][1] is not None]
        if banded:
            axes.fill_between(positions[banded], [nights[days[i]][1] for i in banded],
                              [nights[days[i]][2] for i in banded], color="tab:blue",
                              alpha=0.2, label="5-95 %")  # fmt: skip
        realized = [(i, nights[d][3]) for i, d in enumerate(days) if nights[d][3] is not None]
        if realized:
            axes.plot(*zip(*realized, strict=True), "s", color="black", label="realized")
        if name == "pr_auc_skill":
            axes.axhline(floor, color="tab:red", linestyle="--", linewidth=1,
                         label=f"floor {floor:g}")  # fmt: skip
        step = max(1, len(days) // 12)
        axes.set_xticks(positions[::step], days[::step], fontsize="small")
        axes.set(ylabel=name)
        axes.grid(axis="y", alpha=0.3)
        axes.legend(loc="best", fontsize="small")
    figure.suptitle(title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    figure.clear()
    return path
