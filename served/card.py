"""The model card: what a served model is, typed, parsed once from its ``metadata.json``.

Training writes the metadata as a dict (``training.train``); everything that serves or
watches a model (the API, the batch, the monitors, ``churn status``) reads this card
instead, so a missing or mistyped key fails once, naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from served import registry


class CardError(registry.RegistryError):
    """A model's metadata lacks a key the card needs, or holds a value of the wrong type."""


@dataclass(frozen=True)
class ModelCard:
    """A registry version as serving reads it.

    ``metadata`` is the whole ``metadata.json``, for what only shows it (the API's
    ``/model``) and what checks the fitted model against it (``online_api.compiled_model``).
    The drift references are None for a model stored without them.
    """

    version: str
    model_kind: str
    created_at: datetime
    feature_service: str
    feature_refs: tuple[str, ...]
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    metrics: Mapping[str, float]
    horizon_days: int | None
    active_lookback_days: int | None
    reference_bins: Mapping[str, Any] | None
    score_reference_bins: Mapping[str, Any] | None
    metadata: Mapping[str, Any]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], source: Path | str) -> ModelCard:
        """The card of ``metadata`` (read from ``source``, named in errors); CardError when a
        required key is missing or of the wrong type."""
        read = _Reader(metadata, str(source))
        return cls(
            version=read.text("version"),
            model_kind=read.text("model_kind"),
            created_at=read.instant("created_at"),
            feature_service=read.text("feature_service"),
            feature_refs=read.names("feature_refs"),
            numeric_features=read.names("numeric_features", required=False),
            categorical_features=read.names("categorical_features", required=False),
            metrics=read.mapping("metrics") or {},
            horizon_days=read.count("horizon_days"),
            active_lookback_days=read.count("active_lookback_days"),
            reference_bins=read.mapping("reference_bins"),
            score_reference_bins=read.mapping("score_reference_bins"),
            metadata=dict(metadata),
        )

    @property
    def feature_names(self) -> list[str]:
        """The model's features without their view (``user_activity:logins_7d`` → ``logins_7d``)."""
        return [ref.split(":", 1)[-1] for ref in self.feature_refs]


def load_card(models_dir: Path, version: str) -> ModelCard:
    """The card of registry ``version``; RegistryError (CardError) naming the file."""
    metadata = registry.load_metadata(models_dir, version)
    return ModelCard.from_metadata(metadata, models_dir / version / registry.METADATA_FILE)


def load_served(models_dir: Path, version: str) -> tuple[registry.Classifier, ModelCard]:
    """``(model, card)`` of registry ``version``; RegistryError (CardError) naming the file."""
    model, metadata = registry.load_model(models_dir, version)
    return model, ModelCard.from_metadata(metadata, models_dir / version / registry.METADATA_FILE)


class _Reader:
    """Reads one metadata dict's keys, raising CardError that names the file and the key."""

    def __init__(self, metadata: Mapping[str, Any], source: str) -> None:
        self.metadata, self.source = metadata, source

    def _get(self, key: str, required: bool) -> Any:
        value = self.metadata.get(key)
        if value is None and required:
            raise CardError(f"{self.source} has no {key!r}: not a model card")
        return value

    def _wrong(self, key: str, expected: str) -> CardError:
        value = self.metadata.get(key)
        return CardError(f"{self.source}: {key!r} should be {expected}, got {value!r}")

    def text(self, key: str) -> str:
        value = self._get(key, required=True)
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        return value

    def instant(self, key: str) -> datetime:
        try:
            return datetime.fromisoformat(self.text(key))
        except ValueError as exc:
            raise self._wrong(key, "an ISO 8601 time") from exc

    def names(self, key: str, required: bool = True) -> tuple[str, ...]:
        value = self._get(key, required)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._wrong(key, "a list of strings")
        return tuple(value)

    def count(self, key: str) -> int | None:
        value = self._get(key, required=False)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self._wrong(key, "a whole number")
        return value

    def mapping(self, key: str) -> Mapping[str, Any] | None:
        value = self._get(key, required=False)
        if value is not None and not isinstance(value, dict):
            raise self._wrong(key, "a JSON object")
        return value
