"""Synthetic users and both model kinds fitted on them, as training/train.py fits them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from training.models import MODEL_KINDS, build_model, calibrate, split_columns
from training.references import reference_bins

# Feature order as Feast serves it: a categorical in the middle, like no fixed layout.
NAMES = [
    "active_days_7d",
    "logins_7d",
    "plan",
    "watch_minutes_7d",
    "quiz_score_mean_7d",
    "logins_trend_7d_30d",
    "days_since_last_activity",
    "tenure_days",
    "country",
    "acquisition_channel",
]


def user_frame(n: int, seed: int) -> pd.DataFrame:
    """Synthetic users whose churn rises with inactivity; NaN and None among the values."""
    rng = np.random.default_rng(seed)
    country = rng.choice(np.array(["de", "fr", "us", "unknown"], dtype=object), n)
    country[rng.random(n) < 0.05] = np.nan  # the imputer turns it into "unknown"
    channel = rng.choice(np.array(["ads", "organic", "referral", None], dtype=object), n)
    frame = pd.DataFrame(
        {
            "active_days_7d": rng.integers(0, 8, n),
            "logins_7d": rng.poisson(4, n),
            "plan": rng.choice(["free", "paid"], n, p=[0.65, 0.35]).astype(object),
            "watch_minutes_7d": rng.gamma(2.0, 40.0, n).round(2),
            "quiz_score_mean_7d": np.where(rng.random(n) < 0.3, np.nan, rng.random(n)),
            "logins_trend_7d_30d": np.where(rng.random(n) < 0.1, np.nan, rng.gamma(2, 0.5, n)),
            "days_since_last_activity": rng.geometric(0.25, n) - 1,
            "tenure_days": rng.integers(1, 900, n),
            "country": country,
            "acquisition_channel": channel,
        }
    )
    logit = (
        -1.5
        + 0.35 * frame["days_since_last_activity"]
        - 0.25 * frame["logins_7d"]
        + 0.8 * (frame["plan"] == "free")
        + 0.6 * frame["quiz_score_mean_7d"].isna()
    )
    frame["churned"] = (rng.random(n) < expit(logit)).astype(int)
    return frame


def fit_both_kinds() -> dict[str, tuple[object, dict]]:
    """Both kinds fitted and calibrated as train.py does, with train.py's metadata."""
    fit, cal = user_frame(2400, seed=1), user_frame(1200, seed=2)
    numeric, categorical = split_columns(fit, NAMES)
    out = {}
    for kind in MODEL_KINDS:
        model = build_model(kind, numeric, categorical, seed=0).fit(fit[NAMES], fit["churned"])
        metadata = {
            "version": f"20260101T000000Z-{kind}",
            "model_kind": kind,
            "created_at": "2026-01-01T00:00:00+00:00",
            "feature_service": "churn_model_v1",
            "feature_refs": [f"user_activity:{name}" for name in NAMES],
            "numeric_features": numeric,
            "categorical_features": categorical,
            "reference_bins": reference_bins(pd.concat([fit, cal]), numeric, categorical),
        }
        out[kind] = (calibrate(model, cal[NAMES], cal["churned"]), metadata)
    return out
