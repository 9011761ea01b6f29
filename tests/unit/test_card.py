"""The model card: a registry version's metadata, typed, as serving reads it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from served import registry
from served.card import CardError, ModelCard, load_card, load_served

VERSION = "20261101T040000Z-aaaaaaaa"
CREATED = datetime(2026, 11, 1, 4, tzinfo=UTC)


def trained_metadata(metadata: dict) -> dict:
    """``metadata`` with the keys training.train writes besides the fitted model's."""
    return metadata | {
        "run": CREATED.isoformat(),
        "created_at": CREATED.isoformat(),
        "feature_service": "churn_model_v1",
        "label": "churned",
        "horizon_days": 14,
        "active_lookback_days": 30,
        "windows": [7, 30],
        "metrics": {"pr_auc": 0.41, "roc_auc": 0.8, "precision_at_k": 0.5},
        "score_reference_bins": {"kind": "numeric", "edges": [0.0, 1.0], "shares": [1.0]},
    }


@pytest.mark.parametrize("kind", ["logistic", "boosted"])
def test_a_trained_models_metadata_parses_into_its_card(tmp_path, trained, kind):
    model, fitted = trained[kind]
    metadata = trained_metadata(fitted)
    registry.save_model(tmp_path, VERSION, model, metadata)
    loaded, card = load_served(tmp_path, VERSION)
    assert card == load_card(tmp_path, VERSION)
    assert (card.version, card.model_kind, card.created_at) == (VERSION, kind, CREATED)
    assert card.feature_service == "churn_model_v1"
    assert card.feature_refs == tuple(metadata["feature_refs"])
    assert card.feature_names == [ref.split(":")[1] for ref in metadata["feature_refs"]]
    assert list(card.numeric_features) == metadata["numeric_features"]
    assert list(card.categorical_features) == metadata["categorical_features"]
    assert (card.horizon_days, card.active_lookback_days) == (14, 30)
    assert card.metrics["pr_auc"] == 0.41
    assert card.reference_bins == metadata["reference_bins"]
    assert card.score_reference_bins == metadata["score_reference_bins"]
    assert card.metadata["windows"] == [7, 30]  # the rest, as stored
    assert loaded.predict_proba is not None


def test_the_optional_parts_default_when_absent():
    metadata = {"version": "v1", "model_kind": "logistic", "created_at": CREATED.isoformat(),
                "feature_service": "churn_model_v1", "feature_refs": []}  # fmt: skip
    card = ModelCard.from_metadata(metadata, "metadata.json")
    assert (card.numeric_features, card.metrics, card.horizon_days) == ((), {}, None)
    assert card.reference_bins is None and card.score_reference_bins is None


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("feature_service", None, "has no 'feature_service'"),
        ("created_at", "yesterday", "'created_at' should be an ISO 8601 time"),
        ("feature_refs", "user_activity:logins_7d", "'feature_refs' should be a list of strings"),
        ("horizon_days", "14", "'horizon_days' should be a whole number"),
        ("reference_bins", [], "'reference_bins' should be a JSON object"),
    ],
)
def test_a_missing_or_mistyped_key_names_the_file_and_the_key(tmp_path, trained, key, value, says):
    model, fitted = trained["logistic"]
    metadata = trained_metadata(fitted) | {key: value}
    registry.save_model(tmp_path, VERSION, model, metadata)
    with pytest.raises(CardError, match=f"{VERSION}/metadata.json.*{says}") as caught:
        load_card(tmp_path, VERSION)
    assert isinstance(caught.value, registry.RegistryError)  # the CLI's registry errors
