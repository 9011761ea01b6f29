"""Validation metrics for churn models: ranking quality where the retention team calls the top K.

Pure functions of arrays, no I/O. Every value returned is a plain Python ``float``/``int``
so a metrics dict can go straight into JSON.

Ties: scores are often tied (a recency score in whole days, a constant baseline). A cut-off
inside a block of ties counts that block's positives at their expected share under random
tie-breaking, so results are deterministic and a constant score gives exactly the base rate.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def _labels_and_scores(y_true: ArrayLike, score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return ``y_true`` as a 0/1 int array and ``score`` as floats, checked to match."""
    y = np.asarray(y_true)
    s = np.asarray(score, dtype=float)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(
            f"y_true and score must be 1-d and equal length, got {y.shape} and {s.shape}"
        )
    if y.size == 0:
        raise ValueError("no rows to evaluate")
    if not np.isin(y, [0, 1]).all():
        raise ValueError("y_true must contain only 0/1 (or booleans)")
    if np.isnan(s).any():
        raise ValueError("score contains NaN: impute or drop those rows before evaluating")
    return y.astype(int), s


def _expected_hits(y: np.ndarray, s: np.ndarray, k: int) -> float:
    """Expected number of positives among the ``k`` highest scores, ties broken at random."""
    cutoff = np.partition(s, s.size - k)[s.size - k]  # the k-th highest score
    above = s > cutoff
    tied = s == cutoff
    taken_from_ties = k - int(above.sum())
    return float(y[above].sum() + taken_from_ties * y[tied].sum() / tied.sum())


def _top_count(n: int, fraction: float) -> int:
    """``ceil(fraction * n)``, rounded first so 0.07 * 100 is 7 rows, not 8."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, math.ceil(round(fraction * n, 9)))


def precision_at_k(y_true: ArrayLike, score: ArrayLike, k: int) -> float:
    """Share of positives among the ``k`` highest scores (``k`` above the row count uses all rows).

    This is the hit rate of the retention team's call list. Ties at the cut-off count at their
    expected value, so a constant score returns the base rate.
    """
    y, s = _labels_and_scores(y_true, score)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, y.size)
    return _expected_hits(y, s, k) / k


def top_fraction(
    y_true: ArrayLike, score: ArrayLike, fraction: float = 0.05
) -> tuple[float, float]:
    """Return (precision, recall) among the top ``ceil(fraction * n)`` scores, ties as above.

    Recall needs at least one positive: without one it is undefined and this raises.
    """
    y, s = _labels_and_scores(y_true, score)
    positives = int(y.sum())
    if positives == 0:
        raise ValueError("recall is undefined: y_true has no positives")
    k = _top_count(y.size, fraction)
    hits = _expected_hits(y, s, k)
    return hits / k, hits / positives


def reliability_curve(y_true: ArrayLike, prob: ArrayLike, bins: int = 10) -> pd.DataFrame:
    """Observed churn rate against mean predicted probability, per equal-width bin on [0, 1].

    Bins are closed on the left ([0.1, 0.2)), the last one on both sides so 1.0 counts.
    Empty bins are dropped. Columns: bin_low, bin_high, mean_predicted, observed_rate, count.
    """
    y, p = _labels_and_scores(y_true, prob)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1]")
    index = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    filled = count > 0
    edges = np.linspace(0.0, 1.0, bins + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(index, weights=p, minlength=bins) / count
        observed_rate = np.bincount(index, weights=y, minlength=bins) / count
    return pd.DataFrame(
        {
            "bin_low": edges[:-1][filled],
            "bin_high": edges[1:][filled],
            "mean_predicted": mean_predicted[filled],
            "observed_rate": observed_rate[filled],
            "count": count[filled].astype(int),
        }
    )


def nightly_precision_at_k(
    y_true: ArrayLike, score: ArrayLike, k: int, nights: ArrayLike | None = None
) -> float:
    """Mean over ``nights`` (each row's as-of time) of precision@K within that night.

    The retention team calls the top K of each night's list, so that is the hit rate it
    sees. Pooling several nights instead lets a few users who top every night fill the
    whole top K, and the figure then swings with who they are. ``nights=None``: one night.
    """
    y, s = _labels_and_scores(y_true, score)
    if nights is None:
        return precision_at_k(y, s, min(k, y.size))
    codes = pd.factorize(np.asarray(nights))[0]
    if codes.shape != y.shape:
        raise ValueError(f"nights must have one value per row, got {codes.shape} for {y.shape}")
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    per_night = [
        precision_at_k(y[rows], s[rows], min(k, rows.size)) for rows in np.split(order, bounds)
    ]
    return float(np.mean(per_night))


def pr_auc_skill(pr_auc: float, base_rate: float) -> float:
    """``(PR-AUC − base rate) / (1 − base rate)``: the share of the possible gain over a random
    ranking (0 random, 1 perfect, below 0 worse than random).

    PR-AUC / base rate cannot reach 2 once half the users churn; this share has the same
    range at every base rate, so one floor fits every business. Needs a base rate below 1.
    """
    if not 0 <= base_rate < 1:
        raise ValueError(f"base_rate must be in [0, 1), got {base_rate}")
    return (pr_auc - base_rate) / (1 - base_rate)


def evaluate(
    y_true: ArrayLike,
    score: ArrayLike,
    *,
    k: int = 50,
    top: float = 0.05,
    is_probability: bool = True,
    nights: ArrayLike | None = None,
) -> dict[str, float | int | None]:
    """Return the validation metrics used to compare models, as JSON-safe Python numbers.

    Keys: rows, positives, base_rate, pr_auc (average precision), pr_auc_lift (PR-AUC over
    the base rate), pr_auc_skill (see ``pr_auc_skill``), roc_auc, precision_at_k
    (the mean over ``nights`` of each night's top K, see ``nightly_precision_at_k``),
    precision_top, recall_top, brier (None unless ``score`` is a probability), k (as used:
    at most ``rows``) and top. A constant score gives roc_auc 0.5 and pr_auc = base_rate.
    Raises ValueError when ``y_true`` has a single class: both AUCs are then undefined.
    """
    y, s = _labels_and_scores(y_true, score)
    positives = int(y.sum())
    if positives in (0, y.size):
        only = "negatives (no churners)" if positives == 0 else "positives (all churners)"
        raise ValueError(
            f"y_true has only {only} in {y.size} rows: PR-AUC and ROC-AUC are undefined; "
            "the validation set must contain both classes"
        )
    if is_probability and ((s < 0).any() or (s > 1).any()):
        raise ValueError("is_probability=True but scores fall outside [0, 1]")
    k_used = min(k, y.size)
    precision_top, recall_top = top_fraction(y, s, top)
    base_rate = positives / y.size
    pr_auc = float(average_precision_score(y, s))
    return {
        "rows": int(y.size),
        "positives": positives,
        "base_rate": base_rate,
        "pr_auc": pr_auc,
        "pr_auc_lift": pr_auc / base_rate,
        "pr_auc_skill": pr_auc_skill(pr_auc, base_rate),  # what the promotion floor is set on
        "roc_auc": float(roc_auc_score(y, s)),
        "precision_at_k": nightly_precision_at_k(y, s, k, nights),
        "precision_top": float(precision_top),
        "recall_top": float(recall_top),
        "brier": float(brier_score_loss(y, s)) if is_probability else None,
        "k": int(k_used),
        "top": float(top),
    }
