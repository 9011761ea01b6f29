"""What the models are fitted on: features that can teach them something."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.models import informative_features


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
