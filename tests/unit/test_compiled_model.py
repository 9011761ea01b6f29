"""The compiled scorer against the sklearn model it was compiled from (parity to 1e-9)."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from online_api import compiled_model as scorer_module
from online_api.compiled_model import Scorer
from tests.unit.synthetic import NAMES, user_frame
from training.models import MODEL_KINDS


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
def test_features_the_model_does_not_use_do_not_reach_it(trained, rows, kind: str) -> None:
    """The API's rows carry what the population rule reads beside the model's features."""
    scorer = Scorer.from_model(*trained[kind])
    extra = [row | {"not_a_model_feature": 10**6, "another": "x"} for row in rows[:50]]
    risks, factors = scorer.explain_many(rows[:50], n=len(NAMES))
    extra_risks, extra_factors = scorer.explain_many(extra, n=len(NAMES))
    np.testing.assert_array_equal(extra_risks, risks)
    assert extra_factors == factors


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


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_explain_many_equals_rescoring_each_feature_at_its_reference(trained, rows, kind) -> None:
    scorer = Scorer.from_model(*trained[kind])
    risks, factors = scorer.explain_many(rows[:60], n=3)
    np.testing.assert_allclose(risks, scorer.score_many(rows[:60]), rtol=0, atol=1e-12)
    for row, risk, got in zip(rows[:60], risks, factors, strict=True):
        refs = scorer.references
        effects = {
            name: risk - scorer.score(row | {name: refs[name]})
            for name in scorer.feature_names
            if name in refs and row.get(name) != refs[name]
        }
        want = sorted((e, name) for name, e in effects.items() if e > scorer_module.MIN_EFFECT)
        want = [name for _, name in sorted(want, key=lambda p: -p[0])[:3]]
        assert [f.feature for f in got] == want
        for f in got:
            assert f.effect == pytest.approx(effects[f.feature], abs=1e-12)


def test_a_model_not_calibrated_as_training_does_is_refused_naming_where_that_is(trained):
    """The refusal names the function that builds a servable model, and that function exists."""
    import copy
    import importlib

    model, metadata = trained["logistic"]
    isotonic = copy.copy(model)
    isotonic.method = "isotonic"
    with pytest.raises(ValueError, match="sigmoid calibrator") as refused:
        Scorer(isotonic, metadata)
    named = str(refused.value).split("as ", 1)[1].rstrip(")")
    module, function = named.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), function)), named
