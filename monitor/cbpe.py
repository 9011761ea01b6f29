"""Confidence-based performance estimation (CBPE): what calibrated probabilities say their
labels will score, before the labels exist.

Expected churn rate and precision@K are exact (means of p). PR-AUC, its skill and ROC-AUC
are ratios, so they are drawn: labels ~ Bernoulli(p), ``draws`` times with a seeded
generator, each draw scored exactly as ``training.evaluation.evaluate`` scores realized
labels (sklearn's average precision and ROC-AUC, ties included), reported as the mean and
the 5-95 % band. The band is the label noise of a population this size, not the model's
error: the estimate is only as good as the calibration. Pure functions of arrays, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.evaluation import pr_auc_skill

BAND = (5.0, 95.0)  # percentiles of the draws reported as the band
CELLS_PER_CHUNK = 8_000_000  # draws x users held at once: about 0.1 GB of working arrays


@dataclass(frozen=True)
class Band:
    """A drawn figure: the mean over the draws and the 5-95 % band."""

    mean: float
    lower: float
    upper: float


@dataclass(frozen=True)
class Expected:
    """What a set of calibrated probabilities says its labels will score."""

    rows: int
    churn_rate: float  # mean p: the expected base rate
    k: int
    precision_at_k: float  # mean p of the k highest
    pr_auc: Band
    pr_auc_skill: Band  # training.evaluation.pr_auc_skill of each draw
    roc_auc: Band
    draws: int  # draws with both classes (the others leave both AUCs undefined)


def expected_metrics(prob: np.ndarray, k: int, draws: int, seed: int) -> Expected:
    """The expected figures of ``prob``, each a user's calibrated churn probability.

    Churn rate and precision@K in closed form (the score is p, so ties at the K-th place
    have the same p); the AUCs from ``draws`` label draws. ValueError for no rows, or when
    no draw has both classes (every p 0, or every p 1).
    """
    p = np.asarray(prob, dtype=float)
    if p.size == 0:
        raise ValueError("no scored users to estimate on")
    k = min(k, p.size)
    pr_auc, roc_auc, base = ranking_draws(p, draws, seed)
    if pr_auc.size == 0:
        raise ValueError("every draw has a single class: PR-AUC and ROC-AUC are undefined")
    skill = np.array([pr_auc_skill(a, b) for a, b in zip(pr_auc, base, strict=True)])
    return Expected(
        rows=int(p.size),
        churn_rate=float(p.mean()),
        k=int(k),
        precision_at_k=float(np.sort(p)[-k:].mean()),
        pr_auc=band(pr_auc),
        pr_auc_skill=band(skill),
        roc_auc=band(roc_auc),
        draws=int(pr_auc.size),
    )


class Ranking:
    """Scores sorted once (highest first, ``scores``), to score many label draws on them
    exactly as sklearn scores ties: average precision = sum over positives of (positives at
    or above the end of its block of equal scores) / (users at or above it), over the
    positives; ROC-AUC = (sum of the positives' average ranks - P(P+1)/2) / (P x N)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = np.sort(np.asarray(scores, dtype=float))[::-1]
        n = self.scores.size
        ends = np.append(np.flatnonzero(np.diff(self.scores) != 0), n - 1)  # blocks' last
        starts = np.append(0, ends[:-1] + 1)
        sizes = ends - starts + 1
        self._block_end = np.repeat(ends, sizes) if ends.size < n else None  # None: no ties
        self._inverse_taken = 1.0 / (np.repeat(ends, sizes) + 1)
        self._rank = np.repeat(n - (starts + ends) / 2, sizes)  # average rank, 1 = lowest

    def score(
        self, labels: np.ndarray, hits: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(average precision, ROC-AUC, positives) of each row of ``labels`` (draws x users,
        booleans in the order of ``scores``); NaN where a row has a single class. ``hits``:
        an int32 array of ``labels``' shape to work in (a loop reuses one)."""
        n = self.scores.size
        hits = np.cumsum(labels, axis=1, dtype=np.int32, out=hits)
        at_end = hits if self._block_end is None else hits[:, self._block_end]
        count = hits[:, -1].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            pr_auc = np.einsum("ij,ij,j->i", labels, at_end, self._inverse_taken) / count
            ranked = np.einsum("ij,j->i", labels, self._rank) - count * (count + 1) / 2
            roc_auc = ranked / (count * (n - count))
        single = (count == 0) | (count == n)
        pr_auc[single], roc_auc[single] = np.nan, np.nan
        return pr_auc, roc_auc, count


def ranking_draws(
    prob: np.ndarray, draws: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(average precision, ROC-AUC, base rate) of each of ``draws`` label draws y ~ Bernoulli(p),
    the scores being p; draws with a single class are left out.

    One sort (``Ranking``), then per draw a cumulative sum and two weighted sums over the
    users, ``CELLS_PER_CHUNK`` at a time: about 2 s for 200 draws of 1M users.
    """
    ranking = Ranking(prob)
    n = ranking.scores.size
    rng = np.random.default_rng(seed)
    threshold = ranking.scores.astype(np.float32)  # a uniform in [0, 1) is below 1, not 0
    chunk = max(1, min(draws, CELLS_PER_CHUNK // n))
    uniforms = np.empty((chunk, n), dtype=np.float32)  # reused: fresh pages cost as much
    labels = np.empty((chunk, n), dtype=bool)
    hits = np.empty((chunk, n), dtype=np.int32)
    pr_aucs, roc_aucs, positives = [], [], []
    for start in range(0, draws, chunk):
        size = min(chunk, draws - start)
        rng.random(out=uniforms[:size], dtype=np.float32)
        drawn = np.less(uniforms[:size], threshold, out=labels[:size])
        pr_auc, roc_auc, count = ranking.score(drawn, hits[:size])
        pr_aucs.append(pr_auc)
        roc_aucs.append(roc_auc)
        positives.append(count)
    count = np.concatenate(positives)
    valid = (count > 0) & (count < n)
    return np.concatenate(pr_aucs)[valid], np.concatenate(roc_aucs)[valid], count[valid] / n


def band(values: np.ndarray) -> Band:
    """Mean and the ``BAND`` percentiles of drawn values."""
    lower, upper = np.percentile(values, BAND)
    return Band(float(values.mean()), float(lower), float(upper))
