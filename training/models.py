"""The two models trained on the same rows, and their calibration.

A logistic-regression baseline (imputed, scaled numerics; one-hot categoricals)
and a gradient-boosted candidate (HistGradientBoosting with native categoricals).
Both are calibrated with Platt scaling on a time-held-out slice: a monotone map,
so calibration fixes the probabilities without reordering anyone on the list.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

from served.population import RECENCY

ModelKind = Literal["logistic", "boosted"]
MODEL_KINDS: tuple[ModelKind, ...] = ("logistic", "boosted")


# What tuning may change, and the values used when it does not (training.tuning's first try).
DEFAULT_PARAMS: dict[ModelKind, dict[str, float]] = {
    "logistic": {"C": 0.3},
    "boosted": {
        "learning_rate": 0.05,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 100,
        "l2_regularization": 1.0,
    },
}

# Parameters that count or sum rows are stated for a fit of this many rows, about what the
# search sees (``training.tuning``); ``scale_to_rows`` keeps their share for a larger fit.
REFERENCE_ROWS = 200_000


def scale_to_rows(kind: ModelKind, params: dict[str, float], rows: int) -> dict[str, float]:
    """``params`` (stated for ``REFERENCE_ROWS``) for a fit of ``rows`` rows.

    A leaf of 100 rows is 1/2,000 of the reference but 1/16,000 of 1.6 M rows, and the
    penalties weigh against sums over rows: so above the reference, ``min_samples_leaf``
    and ``l2_regularization`` grow with the rows and logistic ``C`` (the weight of the
    summed loss) shrinks, keeping the regularisation the search chose. Below it nothing
    changes, so a small portal fits as the grid says. A sampled fit and a full one of the
    same portal are then regularised alike.
    """
    factor = max(1.0, rows / REFERENCE_ROWS)
    chosen = DEFAULT_PARAMS[kind] | params
    if kind == "logistic":
        return chosen | {"C": chosen["C"] / factor}
    return chosen | {
        "min_samples_leaf": round(chosen["min_samples_leaf"] * factor),
        "l2_regularization": chosen["l2_regularization"] * factor,
    }


def informative_features(frame: pd.DataFrame, names: list[str]) -> tuple[list[str], list[str]]:
    """(kept, left out): a feature left out is null or one value on every row of ``frame``.

    Such a column (no quizzes in a business that sells courses) teaches a model nothing and
    makes the libraries warn; the model then asks the stores only for what it uses.
    """
    left_out = [n for n in names if frame[n].nunique(dropna=True) < 2]
    return [n for n in names if n not in left_out], left_out


def as_float(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric features as float64, every missing value NaN.

    The stores hand nullable integers over in different guises (pandas' ``Int64`` with
    ``pd.NA`` from Spark's Arrow, ``None`` in an object column from the online store);
    the estimators take NaN only.
    """
    return frame.astype("float64")


def _numeric_input() -> FunctionTransformer:
    return FunctionTransformer(as_float, feature_names_out="one-to-one")


# Features whose growth can only raise the churn risk.
RISING_RISK = (RECENCY,)


def split_columns(frame: pd.DataFrame, names: list[str]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature names, by the frame's dtypes."""
    categorical = [n for n in names if not pd.api.types.is_numeric_dtype(frame[n])]
    return [n for n in names if n not in categorical], categorical


def build_model(
    kind: ModelKind,
    numeric: list[str],
    categorical: list[str],
    seed: int,
    params: dict[str, float] | None = None,
) -> Pipeline:
    """An unfitted pipeline that takes the feature frame as Feast returns it.

    ``params`` (the tuned ones) replace the kind's ``DEFAULT_PARAMS`` by name; a name that is
    not among them is an error, so a typo never trains a model on a silent default.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
    chosen = DEFAULT_PARAMS[kind] | (params or {})
    if unknown := sorted(set(chosen) - set(DEFAULT_PARAMS[kind])):
        raise ValueError(
            f"unknown {kind} parameters {unknown}; expected some of {sorted(DEFAULT_PARAMS[kind])}"
        )
    fill_unknown = SimpleImputer(strategy="constant", fill_value="unknown")
    if kind == "logistic":
        columns = ColumnTransformer(
            [
                (
                    "numeric",
                    make_pipeline(
                        _numeric_input(),
                        SimpleImputer(strategy="median", add_indicator=True),
                        StandardScaler(),
                    ),
                    numeric,
                ),
                (
                    "categorical",
                    make_pipeline(fill_unknown, OneHotEncoder(handle_unknown="ignore")),
                    categorical,
                ),
            ]
        )
        return make_pipeline(columns, LogisticRegression(max_iter=5000, C=chosen["C"]))
    columns = ColumnTransformer(
        [
            ("numeric", _numeric_input(), numeric),
            (
                "categorical",
                make_pipeline(
                    fill_unknown,
                    OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                ),
                categorical,
            ),
        ]
    )
    is_categorical = np.r_[np.zeros(len(numeric), bool), np.ones(len(categorical), bool)]
    # More days without activity never lower the risk, all else equal: the trees are held
    # to it (unconstrained, about a tenth of users' risk fell a few points as they went
    # quiet). The logistic model learns a slope, which its behavioural test checks.
    rising = [int(name in RISING_RISK) for name in numeric] + [0] * len(categorical)
    booster = HistGradientBoostingClassifier(
        learning_rate=chosen["learning_rate"],
        max_leaf_nodes=int(chosen["max_leaf_nodes"]),
        min_samples_leaf=int(chosen["min_samples_leaf"]),
        l2_regularization=chosen["l2_regularization"],
        max_iter=200,
        categorical_features=is_categorical,
        monotonic_cst=rising,
        early_stopping=False,  # a random inner split would make training non-deterministic
        random_state=seed,
    )
    return make_pipeline(columns, booster)


def calibrate(model: Pipeline, features: pd.DataFrame, labels: pd.Series) -> CalibratedClassifierCV:
    """Platt-scale a fitted model on a held-out slice (the model itself is not refitted)."""
    return CalibratedClassifierCV(FrozenEstimator(model), method="sigmoid").fit(features, labels)
