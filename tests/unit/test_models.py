"""What the models are fitted on: features that can teach them something."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.models import (
    DEFAULT_PARAMS,
    MODEL_KINDS,
    REFERENCE_ROWS,
    build_model,
    informative_features,
    scale_to_rows,
)


def test_null_and_constant_features_are_left_out_in_order():
    frame = pd.DataFrame(
        {
            "logins_7d": [0, 3, 1],
            "quiz_attempts_7d": [0, 0, 0],  # constant
            "quiz_score_mean_7d": [np.nan, np.nan, np.nan],  # null everywhere
            "amount_7d": [29.0, np.nan, 29.0],  # one value and nulls: still one value
            "plan": pd.Series(["paid", "free", "paid"], dtype="string"),
            "country": pd.Series(["US", "US", "US"], dtype="string"),
            "watch_minutes_7d": [0.0, np.nan, 12.5],
        }
    )
    kept, left_out = informative_features(frame, list(frame.columns))
    assert kept == ["logins_7d", "plan", "watch_minutes_7d"]
    assert left_out == ["quiz_attempts_7d", "quiz_score_mean_7d", "amount_7d", "country"]


def test_only_the_named_features_are_looked_at():
    frame = pd.DataFrame({"a": [1, 2], "b": [1, 1], "churned": [0, 0]})
    assert informative_features(frame, ["a"]) == (["a"], [])


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_a_null_integer_scores_the_same_in_every_guise(kind):
    """Spark hands ``Int64`` with pd.NA, the online store ``None``: both score as NaN does."""
    rng = np.random.default_rng(0)
    n = 400
    days = rng.integers(0, 60, n).astype(float)
    days[rng.random(n) < 0.3] = np.nan  # never paid
    frame = pd.DataFrame({"days_since_last_payment": days, "logins_7d": rng.poisson(3, n)})
    labels = (rng.random(n) < 0.3).astype(int)
    model = build_model(kind, list(frame.columns), [], seed=0).fit(frame, labels)
    expected = model.predict_proba(frame)[:, 1]
    guises = {
        "Int64": frame.astype({"days_since_last_payment": "Int64"}),
        "object": frame.astype({"days_since_last_payment": object}).replace({np.nan: None}),
    }
    for name, guise in guises.items():
        np.testing.assert_array_equal(model.predict_proba(guise)[:, 1], expected, err_msg=name)


def test_parameters_in_rows_scale_with_the_rows_fitted():
    tuned = {"learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 200,
             "l2_regularization": 1.0}  # fmt: skip
    # Up to the reference, the grid's values as they are: a small portal fits as tuned.
    assert scale_to_rows("boosted", tuned, 20_000) == tuned
    assert scale_to_rows("boosted", tuned, REFERENCE_ROWS) == tuned
    # Eight times the reference (the full 100k-user fit): leaves and penalty eight times.
    full = scale_to_rows("boosted", tuned, 8 * REFERENCE_ROWS)
    assert full == tuned | {"min_samples_leaf": 1600, "l2_regularization": 8.0}
    # A 30 % sample keeps the same share of its rows per leaf as the full fit.
    sampled = scale_to_rows("boosted", tuned, int(2.4 * REFERENCE_ROWS))
    assert sampled["min_samples_leaf"] == 480
    assert sampled["min_samples_leaf"] / (2.4 * REFERENCE_ROWS) == pytest.approx(
        full["min_samples_leaf"] / (8 * REFERENCE_ROWS)
    )
    # Logistic C weighs the summed loss: it shrinks as the rows grow.
    assert scale_to_rows("logistic", {"C": 0.3}, 4 * REFERENCE_ROWS) == {"C": 0.075}
    assert scale_to_rows("logistic", {}, 100) == DEFAULT_PARAMS["logistic"]
    model = build_model("boosted", ["x"], [], 0, full)
    assert model[-1].min_samples_leaf == 1600
