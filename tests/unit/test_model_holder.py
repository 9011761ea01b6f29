"""The API's model holder: follows the production alias, refuses a broken model."""

from __future__ import annotations

import logging

import pytest

from online_api.model_holder import ModelHolder
from training import registry


@pytest.fixture
def models(make_settings, trained):
    settings = make_settings(model_reload_seconds=0.001)
    versions = {}
    for kind, (model, metadata) in trained.items():
        version = f"20260101T00000{len(versions)}Z-{kind[:8]:0<8}"
        registry.save_model(settings.models_dir, version, model, metadata | {"version": version})
        versions[kind] = version
    return settings, versions


def test_no_alias_means_no_model(models):
    settings, _ = models
    assert ModelHolder(settings).current() is None


def test_follows_the_alias(models):
    settings, versions = models
    holder = ModelHolder(settings)
    registry.set_production(settings.models_dir, versions["logistic"], "test")
    assert holder.current().scorer.version == versions["logistic"]
    registry.set_production(settings.models_dir, versions["boosted"], "test")
    holder.refresh()
    assert holder.current().scorer.version == versions["boosted"]


def test_a_corrupt_model_is_refused_and_the_previous_keeps_serving(models, caplog):
    settings, versions = models
    holder = ModelHolder(settings)
    registry.set_production(settings.models_dir, versions["logistic"], "test")
    assert holder.current().scorer.version == versions["logistic"]
    (settings.models_dir / versions["boosted"] / registry.MODEL_FILE).write_bytes(b"not a pickle")
    registry.set_production(settings.models_dir, versions["boosted"], "test")
    with caplog.at_level(logging.ERROR, logger="online_api.model_holder"):
        holder.refresh()
    assert holder.current().scorer.version == versions["logistic"]
    assert f"refusing model {versions['boosted']}" in caplog.text
