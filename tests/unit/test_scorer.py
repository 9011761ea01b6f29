"""The compiled scorer against the sklearn model it was compiled from (parity to 1e-9)."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from online_api import scorer as scorer_module
from online_api.scorer import Scorer
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


@pytest.fixture(scope="module")
def trained() -> dict[str, tuple[object, dict]]:
    """Both kinds fitted and calibrated as train.py does, with train.py's metadata."""
    fit, cal = user_frame(2400, seed=1), user_frame(1200, seed=2)
    numeric, categorical = split_columns(fit, NAMES)
    out = {}
    for kind in MODEL_KINDS:
        model = build_model(kind, numeric, categorical, seed=0).fit(fit[NAMES], fit["churned"])
        metadata = {
            "version": f"20260101T000000Z-{kind}",
            "model_kind": kind,
            "feature_refs": [f"user_activity:{name}" for name in NAMES],
            "numeric_features": numeric,
            "categorical_features": categorical,
            "reference_bins": reference_bins(pd.concat([fit, cal]), numeric, categorical),
        }
        out[kind] = (calibrate(model, cal[NAMES], cal["churned"]), metadata)
    return out


@pytest.fixture(scope="module")
def rows() -> list[dict[str, object]]:
    """Rows as Feast returns them: Python values, None for missing, some unseen categories."""
    rng = np.random.default_rng(7)
    frame = user_frame(500, seed=3)[NAMES].astype(object)
    records = frame.where(frame.notna(), None).to_dict("records")
    for row in records:
        for name in ("plan", "country", "acquisition_channel"):
            draw = rng.random()
            if draw < 0.05:
                row[name] = "atlantis"  # never seen in training
            elif draw < 0.10:
                row[name] = None
            elif draw < 0.13:
                row[name] = float("nan")
        if rng.random() < 0.05:
            row["logins_7d"] = None
    return records


def expected(model, rows: list[dict[str, object]]) -> np.ndarray:
    return model.predict_proba(pd.DataFrame(rows, columns=NAMES))[:, 1]


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_scores_match_predict_proba(trained, rows, kind: str) -> None:
    model, metadata = trained[kind]
    scorer = Scorer.from_model(model, metadata)
    batch = scorer.score_many(rows)
    np.testing.assert_allclose(batch, expected(model, rows), rtol=0, atol=1e-9)
    single = np.array([scorer.score(row) for row in rows])
    np.testing.assert_allclose(single, batch, rtol=0, atol=1e-12)
    assert scorer.version == metadata["version"]
    assert scorer.feature_names == NAMES
    assert scorer.score_many([]).shape == (0,)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_missing_and_unseen_values_as_the_pipeline(trained, rows, kind: str) -> None:
    model, metadata = trained[kind]
    scorer = Scorer.from_model(model, metadata)
    row = rows[0]
    cases = [
        dict.fromkeys(NAMES),  # a user Feast has nothing for
        row | {"country": "atlantis", "plan": "platinum"},
        row | {"country": float("nan")},
        row | {"acquisition_channel": None},
        {k: v for k, v in row.items() if k not in ("logins_7d", "country")},
    ]
    for case in cases:  # one-row frames, as the API would have built them
        assert scorer.score(case) == pytest.approx(expected(model, [case])[0], abs=1e-9)
    # Unseen categories all look alike; NaN is imputed to "unknown"; None numeric is NaN.
    assert scorer.score(cases[1]) == scorer.score(cases[1] | {"country": "mars"})
    assert scorer.score(cases[2]) == scorer.score(row | {"country": "unknown"})
    assert scorer.score(row | {"logins_7d": None}) == scorer.score(row | {"logins_7d": np.nan})


def test_boosted_rows_exactly_at_split_thresholds(trained, rows) -> None:
    """``<=`` goes left: a value equal to a threshold must follow sklearn's side."""
    model, metadata = trained["boosted"]
    booster = model.calibrated_classifiers_[0].estimator.estimator[-1]
    mask = booster.is_categorical_
    order = np.r_[np.flatnonzero(mask), np.flatnonzero(~mask)]  # the booster's column order
    numeric = metadata["numeric_features"]
    cases = []
    for (predictor,) in booster._predictors[:40]:
        for node in predictor.nodes[~predictor.nodes["is_leaf"].astype(bool)]:
            if not node["is_categorical"] and np.isfinite(node["num_threshold"]):
                name = numeric[order[node["feature_idx"]]]
                cases.append(rows[len(cases) % 50] | {name: float(node["num_threshold"])})
    scorer = Scorer.from_model(model, metadata)
    np.testing.assert_allclose(scorer.score_many(cases), expected(model, cases), atol=1e-9)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_top_factors_are_positive_and_sorted(trained, rows, kind: str) -> None:
    scorer = Scorer.from_model(*trained[kind])
    for row in rows[:50]:
        factors = scorer.top_factors(row, n=3)
        assert len(factors) <= 3
        assert all(f.effect > 0 for f in factors)
        assert [f.effect for f in factors] == sorted((f.effect for f in factors), reverse=True)
        assert all(f.feature in NAMES and f.value is row[f.feature] for f in factors)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_raising_a_risky_feature_raises_its_factor(trained, kind: str) -> None:
    scorer = Scorer.from_model(*trained[kind])
    typical = dict(scorer.references)
    assert scorer.top_factors(typical) == []  # everyone at the reference: nothing stands out
    name, scores = "days_since_last_activity", {}
    for days in (4, 6, 11):
        scores[days] = scorer.score(typical | {name: days})
    assert scores[4] < scores[6] < scores[11]  # the model says inactivity raises risk
    effects = []
    for days in (4, 6, 11):
        factors = {f.feature: f for f in scorer.top_factors(typical | {name: days}, n=len(NAMES))}
        effects.append(factors[name].effect)
        assert factors[name].effect == pytest.approx(scores[days] - scorer.score(typical))
    assert effects == sorted(effects)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_joblib_round_trip_compiles_the_same_scorer(trained, rows, kind, tmp_path: Path) -> None:
    model, metadata = trained[kind]
    joblib.dump(model, tmp_path / "model.joblib")
    loaded = Scorer.from_model(joblib.load(tmp_path / "model.joblib"), metadata)
    original = Scorer.from_model(model, metadata)
    assert np.array_equal(loaded.score_many(rows), original.score_many(rows))
    assert loaded.top_factors(rows[1]) == original.top_factors(rows[1])


def test_load_fails_on_mismatched_metadata_or_parity(trained, monkeypatch) -> None:
    model, metadata = trained["boosted"]
    with pytest.raises(ValueError, match="feature lists"):
        Scorer.from_model(model, metadata | {"numeric_features": ["logins_7d"]})
    with pytest.raises(ValueError, match="metadata says"):
        Scorer.from_model(model, metadata | {"model_kind": "logistic"})
    broken = scorer_module._Boosted.margin
    monkeypatch.setattr(scorer_module._Boosted, "margin", lambda *a: broken(*a) + 1e-6)
    with pytest.raises(RuntimeError, match="differs from predict_proba"):
        Scorer.from_model(model, metadata)


def test_references_from_reference_bins() -> None:
    bins = {
        "days": {
            "kind": "numeric",
            "edges": [0.0, 1.0, 2.0, 4.0, 7.0],
            "proportions": [0.44, 0.17, 0.10, 0.11, 0.09, 0.09],
            "missing": 0.0,
        },
        "plan": {"kind": "categorical", "proportions": {"free": 0.67, "paid": 0.33}},
        "empty": {"kind": "numeric", "edges": [], "proportions": [0.0], "missing": 1.0},
    }
    # Shares up to each cut point: 0.44, 0.61, ... so the median is the cut point 1.0.
    assert scorer_module._references(bins) == {"days": 1.0, "plan": "free"}
