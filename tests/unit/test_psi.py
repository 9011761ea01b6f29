"""PSI: hand-computed cases, the binning of training/references.py, and statistical sanity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from monitor.psi import (
    EPSILON,
    categorical_shares,
    feature_psi,
    numeric_shares,
    psi,
    psi_status,
    worst,
)
from training.references import reference_bins

NUMERIC = {"kind": "numeric", "edges": [1.0, 2.0], "proportions": [0.5, 0.25, 0.25], "missing": 0.2}
CATEGORICAL = {"kind": "categorical", "proportions": {"ads": 0.75, "organic": 0.25}, "missing": 0.2}


def normal_reference(rows: int = 20_000, seed: int = 0) -> dict:
    values = np.random.default_rng(seed).normal(size=rows)
    return reference_bins(pd.DataFrame({"x": values}), ["x"], [])["x"]


def test_identical_shares_give_zero() -> None:
    shares = np.array([0.1, 0.2, 0.3, 0.4])
    assert psi(shares, shares) == pytest.approx(0.0, abs=1e-12)


def test_same_values_as_the_reference_give_zero() -> None:
    frame = pd.DataFrame(
        {
            "x": np.r_[np.random.default_rng(1).gamma(2.0, 3.0, 997), [np.nan] * 3],
            "c": ["a", "b", "b", None] * 250,
        }
    )
    bins = reference_bins(frame, ["x"], ["c"])
    assert feature_psi(bins["x"], frame["x"]) == pytest.approx(0.0, abs=1e-12)
    assert feature_psi(bins["c"], frame["c"]) == pytest.approx(0.0, abs=1e-12)


def test_hand_computed_numeric_case() -> None:
    # Reference bins: (-inf, 1], (1, 2], (2, inf) and missing: 0.4, 0.2, 0.2, 0.2.
    # Values on an edge belong to the bin below it (searchsorted side="left");
    # -3 and 9 lie outside the training range and land in the edge bins.
    values = [0.5, 1.0, -3.0, 1.5, 2.0, 2.5, 9.0, np.nan, np.nan, np.nan]
    ref, cur = numeric_shares(NUMERIC, values)
    np.testing.assert_allclose(ref, [0.4, 0.2, 0.2, 0.2])
    np.testing.assert_allclose(cur, [0.3, 0.2, 0.2, 0.3])
    # (0.3-0.4)·ln(0.3/0.4) + (0.3-0.2)·ln(0.3/0.2) = 0.1·ln(4/3 · 3/2) = 0.1·ln 2
    assert feature_psi(NUMERIC, values) == pytest.approx(0.1 * math.log(2), rel=1e-12)


def test_values_beyond_the_training_range_are_counted_in_the_edge_bins() -> None:
    ref, cur = numeric_shares(NUMERIC, [-1e9, -5.0, 1e9, np.inf, -np.inf])
    assert ref.shape == cur.shape == (4,)
    np.testing.assert_allclose(cur, [0.6, 0.0, 0.4, 0.0])
    assert cur.sum() == pytest.approx(1.0)


def test_binning_matches_reference_bins() -> None:
    # Integers with ties on the edges: the current shares of the training rows themselves
    # must equal the frozen proportions, bin for bin.
    values = np.random.default_rng(2).poisson(4, 5000).astype(float)
    bins = reference_bins(pd.DataFrame({"x": values}), ["x"], [])["x"]
    ref, cur = numeric_shares(bins, values)
    np.testing.assert_allclose(cur[:-1], bins["proportions"])
    np.testing.assert_allclose(ref, cur)


def test_empty_bins_do_not_give_inf() -> None:
    value = psi([0.5, 0.5, 0.0], [0.5, 0.25, 0.25])
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - EPSILON) * math.log(0.25 / EPSILON)
    assert math.isfinite(value)
    assert value == pytest.approx(expected, rel=1e-12)
    # Empty on both sides weighs nothing.
    assert psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    # Every current value missing while training had none: large but finite.
    all_missing = {**NUMERIC, "missing": 0.0}
    assert math.isfinite(feature_psi(all_missing, [np.nan] * 10))
    assert feature_psi(all_missing, [np.nan] * 10) > 1


def test_unseen_categories_are_pooled_and_counted() -> None:
    values = pd.Series(["ads", "tiktok", "podcast", "organic", None], dtype=object)
    ref, cur = categorical_shares(CATEGORICAL, values)
    # Bins: ads, organic, unseen, missing.
    np.testing.assert_allclose(ref, [0.6, 0.2, 0.0, 0.2])
    np.testing.assert_allclose(cur, [0.2, 0.2, 0.4, 0.2])
    expected = (0.2 - 0.6) * math.log(0.2 / 0.6) + (0.4 - EPSILON) * math.log(0.4 / EPSILON)
    assert feature_psi(CATEGORICAL, values) == pytest.approx(expected, rel=1e-12)


def test_categories_compare_as_strings_and_nan_is_missing() -> None:
    reference = {"kind": "categorical", "proportions": {"1": 0.5, "2": 0.5}, "missing": 0.0}
    ref, cur = categorical_shares(reference, pd.Series(["1", "2", np.nan, pd.NA], dtype=object))
    np.testing.assert_allclose(ref, [0.5, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(cur, [0.25, 0.25, 0.0, 0.5])


def test_psi_is_symmetric_and_non_negative() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
        assert psi(a, b) == pytest.approx(psi(b, a), rel=1e-12)
        assert psi(a, b) > 0
    # Mirror-image shifts of a symmetric distribution drift about equally.
    reference = normal_reference()
    rng = np.random.default_rng(4)
    up = feature_psi(reference, rng.normal(0.5, 1.0, 20_000))
    down = feature_psi(reference, rng.normal(-0.5, 1.0, 20_000))
    assert up == pytest.approx(down, rel=0.2)


def test_a_shifted_normal_drifts_and_a_resample_does_not() -> None:
    reference = normal_reference()
    rng = np.random.default_rng(5)
    assert feature_psi(reference, rng.normal(0.75, 1.0, 20_000)) > 0.25
    assert feature_psi(reference, rng.normal(0.0, 1.0, 20_000)) < 0.1


@pytest.mark.parametrize(
    ("value", "status"),
    [(0.0, "ok"), (0.0999, "ok"), (0.1, "warn"), (0.2499, "warn"), (0.25, "alert"), (3.0, "alert")],
)
def test_status_thresholds(value: float, status: str) -> None:
    assert psi_status(value, warn=0.1, alert=0.25) == status


def test_worst_status() -> None:
    assert worst(["ok", "alert", "warn"]) == "alert"
    assert worst(["ok", "warn"]) == "warn"
    assert worst([]) == "ok"


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="below the warn threshold"):
        psi_status(0.1, warn=0.3, alert=0.2)
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [1.0])
    with pytest.raises(ValueError, match="no values"):
        feature_psi(NUMERIC, [])
    with pytest.raises(ValueError, match="proportions"):
        numeric_shares({**NUMERIC, "proportions": [1.0]}, [1.0])
    with pytest.raises(ValueError, match="unknown reference kind"):
        feature_psi({"kind": "text"}, ["a"])
