"""What the models are fitted on: features that can teach them something."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.models import MODEL_KINDS, build_model, informative_features


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
