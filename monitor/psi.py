"""Population stability index (PSI): how far a batch's distribution moved from training's.

PSI = Σ (cur - ref) · ln(cur / ref) over bins, where ref and cur are the shares of the
rows in each bin. It is 0 for identical shares, never negative, and symmetric in ref and
cur. Rule of thumb: below 0.1 stable, 0.1-0.25 worth a look, above 0.25 shifted.

The reference is what ``training.references.reference_bins`` froze into the model's
metadata; the bins here reproduce its binning exactly, and every row of the batch lands
in exactly one bin (edge bins are open ended, missing values have a bin of their own,
categories training never saw share an "unseen" bin). Pure functions, no I/O.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

# Stands in for an empty share on either side: ln(0) would make one empty bin an infinite
# PSI. With it an empty bin still weighs (share · ln(share / 1e-4)), e.g. 0.05 → 0.31 alone.
EPSILON = 1e-4
STATUSES = ("ok", "warn", "alert")  # in order of severity


def psi(reference: ArrayLike, current: ArrayLike, epsilon: float = EPSILON) -> float:
    """PSI of two share vectors over the same bins; empty shares count as ``epsilon``.

    The replacement is applied to the share itself (difference and logarithm alike), so
    ``psi(a, b) == psi(b, a)`` still holds.
    """
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    if ref.shape != cur.shape or ref.ndim != 1 or ref.size == 0:
        raise ValueError(f"shares must be 1-d over the same bins, got {ref.shape} and {cur.shape}")
    if (ref < 0).any() or (cur < 0).any() or np.isnan(ref).any() or np.isnan(cur).any():
        raise ValueError("shares must be non-negative numbers")
    ref = np.where(ref > 0, ref, epsilon)
    cur = np.where(cur > 0, cur, epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def numeric_shares(reference: dict, values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(reference, current) shares over the bins of ``reference`` plus a last "missing" bin.

    Bin i holds the values v with ``searchsorted(edges, v, side="left") == i``, as in
    ``reference_bins``: a value equal to an edge belongs to the bin below it, values below
    the first or above the last edge land in the first or last bin. The reference's
    proportions are shares of its non-missing values, so they are scaled by (1 - missing).
    """
    edges = np.asarray(reference["edges"], dtype=float)
    proportions = np.asarray(reference["proportions"], dtype=float)
    if proportions.size != edges.size + 1:
        raise ValueError(
            f"numeric reference needs len(edges) + 1 proportions, got {edges.size} edges "
            f"and {proportions.size} proportions"
        )
    missing = float(reference["missing"])
    ref = np.append(proportions * (1.0 - missing), missing)
    current = pd.Series(values).to_numpy(dtype=float, na_value=np.nan)
    if current.size == 0:
        raise ValueError("no values to compare with the reference")
    absent = np.isnan(current)
    counts = np.bincount(
        np.searchsorted(edges, current[~absent], side="left"), minlength=edges.size + 1
    )
    return ref, np.append(counts, absent.sum()) / current.size


def categorical_shares(reference: dict, values: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(reference, current) shares over the reference's categories, "unseen", and "missing".

    Values are compared as strings, as ``reference_bins`` recorded them. Categories the
    reference never saw are pooled into one "unseen" bin, whose reference share is 0
    (hence ``EPSILON`` in ``psi``): a new category weighs by how many rows it takes.
    """
    categories = sorted(reference["proportions"])
    missing = float(reference["missing"])
    ref = np.array([reference["proportions"][c] for c in categories], dtype=float)
    ref = np.append(ref * (1.0 - missing), [0.0, missing])
    current = pd.Series(values).astype("string")
    if current.size == 0:
        raise ValueError("no values to compare with the reference")
    absent = current.isna().to_numpy()
    counts = current[~absent].value_counts()
    seen = counts.reindex(categories, fill_value=0).to_numpy(dtype=float)
    unseen = float(counts.sum() - seen.sum())
    return ref, np.append(seen, [unseen, absent.sum()]) / current.size


def feature_psi(reference: dict, values: ArrayLike, epsilon: float = EPSILON) -> float:
    """PSI of ``values`` against one ``reference_bins`` entry (numeric or categorical)."""
    kind = reference.get("kind")
    if kind == "numeric":
        return psi(*numeric_shares(reference, values), epsilon=epsilon)
    if kind == "categorical":
        return psi(*categorical_shares(reference, values), epsilon=epsilon)
    raise ValueError(f"unknown reference kind {kind!r} (expected numeric or categorical)")


def psi_status(value: float, warn: float, alert: float) -> str:
    """``ok`` below ``warn``, ``warn`` from ``warn`` on, ``alert`` from ``alert`` on."""
    if alert < warn:
        raise ValueError(f"the PSI alert threshold ({alert}) is below the warn threshold ({warn})")
    if value >= alert:
        return "alert"
    return "warn" if value >= warn else "ok"


def worst(statuses: list[str]) -> str:
    """The most severe of ``statuses`` (``ok`` for none)."""
    return max(statuses, key=STATUSES.index, default="ok")
