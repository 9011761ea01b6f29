"""Validation metrics: hand-computed small cases, ties at the cut-off, and sklearn agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from training.evaluation import (
    evaluate,
    nightly_precision_at_k,
    pr_auc_skill,
    precision_at_k,
    reliability_curve,
    top_fraction,
)

# Ten users, three churners (rows 0, 3, 6); scores strictly decreasing by row.
Y = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0, 0])
DISTINCT = np.linspace(1.0, 0.1, 10)
# Rows 2-5 share 0.5: one churner among four tied rows.
TIED = np.array([0.9, 0.8, 0.5, 0.5, 0.5, 0.5, 0.2, 0.1, 0.1, 0.0])


@pytest.mark.parametrize(
    ("score", "k", "expected"),
    [
        (DISTINCT, 1, 1.0),
        (DISTINCT, 2, 1 / 2),
        (DISTINCT, 4, 2 / 4),
        (DISTINCT, 7, 3 / 7),
        (DISTINCT, 10, 3 / 10),
        (DISTINCT, 50, 3 / 10),  # k above the row count uses every row
        (TIED, 2, 1 / 2),  # cut-off above the tie block
        (TIED, 3, (1 + 1 / 4) / 3),  # one of four tied rows taken, 1/4 expected churner
        (TIED, 4, (1 + 2 / 4) / 4),
        (TIED, 6, (1 + 1) / 6),  # the whole block taken: no expectation needed
        (TIED, 8, 3 / 8),  # one of the two rows tied at 0.1, neither a churner
        (np.full(10, 0.3), 1, 3 / 10),  # constant score: base rate at any k
        (np.full(10, 0.3), 5, 3 / 10),
        (-DISTINCT, 3, 0.0),  # reversed: the top three are non-churners
    ],
)
def test_precision_at_k(score: np.ndarray, k: int, expected: float) -> None:
    assert precision_at_k(Y, score, k) == pytest.approx(expected)


def test_precision_at_k_ties_match_random_tie_breaking() -> None:
    """The expected-value rule equals the mean over every ordering of the tied rows."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    score = rng.integers(0, 4, 40).astype(float)  # heavy ties
    draws = []
    for _ in range(4000):
        perm = rng.permutation(40)
        order = perm[np.argsort(-score[perm], kind="stable")]
        draws.append(y[order[:13]].mean())
    assert precision_at_k(y, score, 13) == pytest.approx(np.mean(draws), abs=0.01)


def test_precision_at_k_is_a_python_float() -> None:
    assert type(precision_at_k(Y, DISTINCT, 3)) is float


@pytest.mark.parametrize("k", [0, -1])
def test_precision_at_k_rejects_nonpositive_k(k: int) -> None:
    with pytest.raises(ValueError, match="k must be"):
        precision_at_k(Y, DISTINCT, k)


@pytest.mark.parametrize(
    ("score", "fraction", "expected"),
    [
        (DISTINCT, 0.1, (1.0, 1 / 3)),  # ceil(1.0) = 1 row
        (DISTINCT, 0.05, (1.0, 1 / 3)),  # ceil(0.5) = 1 row
        (DISTINCT, 0.35, (2 / 4, 2 / 3)),  # ceil(3.5) = 4 rows
        (DISTINCT, 0.7, (3 / 7, 1.0)),  # 0.7 * 10 is 7.000000000000001 in floating point: 7 rows
        (DISTINCT, 1.0, (3 / 10, 1.0)),
        (TIED, 0.3, ((1 + 1 / 4) / 3, (1 + 1 / 4) / 3)),
        # constant: precision is the base rate, recall the share of rows taken
        (np.full(10, 0.3), 0.2, (3 / 10, 2 / 10)),
    ],
)
def test_top_fraction(score: np.ndarray, fraction: float, expected: tuple[float, float]) -> None:
    assert top_fraction(Y, score, fraction) == pytest.approx(expected)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_top_fraction_rejects_fraction_outside_unit_interval(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        top_fraction(Y, DISTINCT, fraction)


def test_top_fraction_without_positives_raises() -> None:
    with pytest.raises(ValueError, match="no positives"):
        top_fraction(np.zeros(10), DISTINCT)


def test_reliability_curve_hand_computed() -> None:
    y = [0, 1, 0, 0, 1, 1, 1]
    prob = [0.05, 0.15, 0.10, 0.0, 0.55, 0.95, 1.0]
    table = reliability_curve(y, prob, bins=10)
    assert list(table.columns) == [
        "bin_low",
        "bin_high",
        "mean_predicted",
        "observed_rate",
        "count",
    ]
    assert table["bin_low"].tolist() == pytest.approx([0.0, 0.1, 0.5, 0.9])  # empty bins dropped
    assert table["bin_high"].tolist() == pytest.approx([0.1, 0.2, 0.6, 1.0])
    assert table["count"].tolist() == [2, 2, 1, 2]  # 1.0 falls in the last bin, 0.1 in [0.1, 0.2)
    assert table["mean_predicted"].tolist() == pytest.approx([0.025, 0.125, 0.55, 0.975])
    assert table["observed_rate"].tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0])


def test_reliability_curve_matches_sklearn_calibration_curve() -> None:
    rng = np.random.default_rng(1)
    prob = rng.beta(1, 8, 2000)
    y = (rng.random(2000) < prob).astype(int)
    table = reliability_curve(y, prob, bins=10)
    observed, predicted = calibration_curve(y, prob, n_bins=10)
    np.testing.assert_allclose(table["observed_rate"], observed)
    np.testing.assert_allclose(table["mean_predicted"], predicted)
    assert table["count"].sum() == 2000


def test_reliability_curve_rejects_values_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_curve([0, 1], [0.2, 1.2])


def _dataset(seed: int = 2, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    prob = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.15, n), 0, 1)
    return y, prob


def test_evaluate_keys_and_values_match_sklearn() -> None:
    y, prob = _dataset()
    result = evaluate(y, prob, k=50, top=0.05)
    assert set(result) == {
        "rows", "positives", "base_rate", "pr_auc", "pr_auc_lift", "pr_auc_skill", "roc_auc",
        "precision_at_k", "precision_top", "recall_top", "brier", "k", "top",
    }  # fmt: skip
    assert result["pr_auc_lift"] == pytest.approx(result["pr_auc"] / y.mean())
    assert result["pr_auc_skill"] == pytest.approx((result["pr_auc"] - y.mean()) / (1 - y.mean()))
    assert result["rows"] == 500
    assert result["positives"] == int(y.sum())
    assert result["base_rate"] == pytest.approx(y.mean())
    assert result["pr_auc"] == pytest.approx(average_precision_score(y, prob))
    assert result["roc_auc"] == pytest.approx(roc_auc_score(y, prob))
    assert result["brier"] == pytest.approx(brier_score_loss(y, prob))
    assert result["precision_at_k"] == pytest.approx(precision_at_k(y, prob, 50))
    assert (result["precision_top"], result["recall_top"]) == pytest.approx(
        top_fraction(y, prob, 0.05)
    )
    assert (result["k"], result["top"]) == (50, 0.05)
    assert all(type(value) in (int, float) for value in result.values())
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize(
    ("name", "score", "roc_auc", "pr_auc", "skill", "precision_at_3"),
    [
        ("perfect", Y * 0.8 + 0.1, 1.0, 1.0, 1.0, 1.0),
        # churners last: the only precision step is at recall 1, so AP = base rate
        ("reversed", 1 - (Y * 0.8 + 0.1), 0.0, 0.3, 0.0, 0.0),
        ("constant", np.full(10, 0.5), 0.5, 0.3, 0.0, 0.3),
    ],
)
def test_evaluate_reference_scores(
    name: str, score: np.ndarray, roc_auc: float, pr_auc: float, skill: float,
    precision_at_3: float,
) -> None:  # fmt: skip
    result = evaluate(Y, score, k=3, top=0.3)
    assert result["roc_auc"] == pytest.approx(roc_auc), name
    assert result["pr_auc"] == pytest.approx(pr_auc), name
    assert result["pr_auc_skill"] == pytest.approx(skill, abs=1e-12), name
    assert result["precision_at_k"] == pytest.approx(precision_at_3), name
    assert result["precision_top"] == pytest.approx(precision_at_3), name


def test_evaluate_constant_score_pr_auc_is_base_rate() -> None:
    y, _ = _dataset()
    result = evaluate(y, np.full(y.size, 0.07))
    assert result["pr_auc"] == pytest.approx(result["base_rate"])
    assert result["roc_auc"] == 0.5


def test_evaluate_non_probability_score_has_no_brier() -> None:
    days_since_login = np.array([40, 2, 3, 35, 1, 0, 20, 5, 4, 2], dtype=float)
    result = evaluate(Y, days_since_login, k=3, is_probability=False)
    assert result["brier"] is None
    assert result["precision_at_k"] == pytest.approx(1.0)


def test_evaluate_probability_outside_unit_interval_raises() -> None:
    with pytest.raises(ValueError, match="outside"):
        evaluate(Y, DISTINCT * 10)


def test_evaluate_reports_k_as_used() -> None:
    assert evaluate(Y, DISTINCT, k=50)["k"] == 10


@pytest.mark.parametrize(("label", "match"), [(0, "only negatives"), (1, "only positives")])
def test_evaluate_single_class_raises(label: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        evaluate(np.full(10, label), DISTINCT)


@pytest.mark.parametrize(
    ("y_true", "score", "match"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], "0/1"),
        ([0, 1], [0.1, 0.2, 0.3], "equal length"),
        ([0, 1], [0.1, np.nan], "NaN"),
        ([], [], "no rows"),
    ],
)
def test_bad_inputs_raise(y_true: list, score: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        precision_at_k(y_true, score, 1)


def test_nightly_precision_is_the_mean_of_each_nights_top_k() -> None:
    # Night a: top 2 are 1, 0 → 0.5. Night b: top 2 are 1, 1 → 1.0. Mean 0.75.
    y = np.array([1, 0, 0, 1, 1, 0])
    score = np.array([0.9, 0.8, 0.1, 0.5, 0.4, 0.3])
    nights = np.array(["a", "a", "a", "b", "b", "b"])
    assert nightly_precision_at_k(y, score, 2, nights) == pytest.approx(0.75)
    # Pooled, night a's two high scores fill the list: 0.5.
    assert precision_at_k(y, score, 2) == pytest.approx(0.5)
    assert nightly_precision_at_k(y, score, 2) == pytest.approx(0.5)


def test_nightly_precision_uses_all_of_a_night_smaller_than_k() -> None:
    y = np.array([1, 0, 1, 1, 0])
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    nights = np.array([2, 2, 2, 1, 1])  # night 2: 2/3 over its 3 rows; night 1: 1/2
    assert nightly_precision_at_k(y, score, 10, nights) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert evaluate(y, score, k=10, nights=nights)["precision_at_k"] == pytest.approx(7 / 12)


def test_one_user_topping_every_night_does_not_fill_the_nightly_list() -> None:
    """Seven nights, one sure churner always on top: pooled P@7 is that user seven times."""
    rng = np.random.default_rng(0)
    nights = np.repeat(np.arange(7), 100)
    y = (rng.random(700) < 0.1).astype(int)
    score = rng.random(700) * 0.5
    top_user = np.arange(7) * 100
    y[top_user], score[top_user] = 1, 1.0
    assert precision_at_k(y, score, 7) == 1.0
    nightly = nightly_precision_at_k(y, score, 7, nights)
    assert nightly < 0.5
    assert nightly == pytest.approx(
        np.mean([precision_at_k(y[n * 100 : n * 100 + 100], score[n * 100 : n * 100 + 100], 7)
                 for n in range(7)])
    )  # fmt: skip


def test_nights_must_match_the_rows() -> None:
    with pytest.raises(ValueError, match="one value per row"):
        nightly_precision_at_k([0, 1], [0.1, 0.2], 1, [1, 2, 3])


@pytest.mark.parametrize(
    ("pr_auc", "base_rate", "skill"),
    [
        (0.382, 0.103, 0.311),  # the demo world's logistic model
        (0.71, 0.52, 0.396),  # a real export where half the users churn (lift 1.37 at most 1.92)
        (0.52, 0.52, 0.0),  # random at a high base rate
        (1.0, 0.52, 1.0),  # perfect at a high base rate
        (0.05, 0.10, -0.056),  # worse than random
    ],
)
def test_pr_auc_skill_has_the_same_range_at_every_base_rate(
    pr_auc: float, base_rate: float, skill: float
) -> None:
    assert pr_auc_skill(pr_auc, base_rate) == pytest.approx(skill, abs=5e-4)


@pytest.mark.parametrize("base_rate", [1.0, -0.1])
def test_pr_auc_skill_needs_a_base_rate_below_one(base_rate: float) -> None:
    with pytest.raises(ValueError, match="base_rate"):
        pr_auc_skill(0.5, base_rate)
