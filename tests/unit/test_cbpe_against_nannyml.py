"""``monitor.cbpe`` against NannyML's CBPE on the same scores, and against the truth.

NannyML cannot be installed beside the product (benchmarks/nannyml_reference.py says why),
so that script ran it in a venv of its own and recorded its estimates in
``tests/unit/recorded/nannyml_cbpe.json``; the scores need no random generator, so they are
rebuilt here exactly. The truth is the mean of realized figures (sklearn) over label draws
y ~ Bernoulli(p), with a generator of its own.

ROC-AUC agrees within 0.0025 on every chunk. Average precision agrees within 0.006 where the
chunk looks like NannyML's reference and is 0.021 lower on the riskier chunk, where ours is
the truth's (0.4801 against 0.4805) and NannyML's 0.5009 is not: it re-calibrates the scores
on the reference period and estimates the ratio of expected counts, not the expected ratio.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, ndtri
from sklearn.metrics import average_precision_score, roc_auc_score

from monitor.cbpe import expected_metrics

RECORDED = json.loads((Path(__file__).parent / "recorded" / "nannyml_cbpe.json").read_text())
CHUNKS = {chunk["name"]: chunk for chunk in RECORDED["chunks"]}
DRAWS, SEED = 400, 27


def _scores(chunk: dict) -> np.ndarray:
    """The recorded formula: expit(mu + s * ndtri((i + 0.5) / n))."""
    n = chunk["n"]
    return expit(chunk["mu"] + chunk["s"] * ndtri((np.arange(n) + 0.5) / n))


def _truth(p: np.ndarray, draws: int = 60) -> tuple[float, float]:
    """Mean realized ROC-AUC and average precision over label draws from p."""
    rng = np.random.default_rng(2027)
    labels = [rng.random(p.size) < p for _ in range(draws)]
    return (
        float(np.mean([roc_auc_score(y, p) for y in labels])),
        float(np.mean([average_precision_score(y, p) for y in labels])),
    )


def test_the_recorded_run_is_the_one_described():
    assert RECORDED["nannyml"] == "0.13.1"
    assert set(CHUNKS) == {"as reference", "riskier", "flatter", "small"}


@pytest.mark.parametrize("name", sorted(CHUNKS))
def test_roc_auc_agrees_with_nannyml_and_both_estimates_with_the_truth(name):
    chunk = CHUNKS[name]
    p = _scores(chunk)
    ours = expected_metrics(p, k=50, draws=DRAWS, seed=SEED)
    assert ours.roc_auc.mean == pytest.approx(chunk["roc_auc"], abs=0.005)
    # NannyML's own sampling error is 0.01-0.03 here: 2.5 of them.
    ap_tolerance = 2.5 * chunk["average_precision_sampling_error"]
    assert ours.pr_auc.mean == pytest.approx(chunk["average_precision"], abs=ap_tolerance)
    roc_truth, ap_truth = _truth(p)
    noise = 0.01 if chunk["n"] < 10_000 else 0.004  # 60 draws of the truth, 400 of ours
    assert ours.roc_auc.mean == pytest.approx(roc_truth, abs=noise)
    assert ours.pr_auc.mean == pytest.approx(ap_truth, abs=noise)


def test_where_the_two_differ_ours_is_the_truths():
    p = _scores(CHUNKS["riskier"])
    ours = expected_metrics(p, k=50, draws=DRAWS, seed=SEED).pr_auc.mean
    _, truth = _truth(p)
    theirs = CHUNKS["riskier"]["average_precision"]
    assert abs(ours - truth) < 0.004 < 0.015 < abs(theirs - truth)
