"""The API's model holder: follows the production alias, refuses a broken model."""

from __future__ import annotations

import logging

import pytest

from online_api.model_holder import ModelHolder
from served import registry
from served.card import ModelCard


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
    holder = ModelHolder(settings)
    holder.refresh()
    assert holder.current() is None


def test_follows_the_alias(models):
    settings, versions = models
    holder = ModelHolder(settings)
    registry.set_production(settings.models_dir, versions["logistic"], "test")
    holder.refresh()
    assert holder.current().scorer.version == versions["logistic"]
    registry.set_production(settings.models_dir, versions["boosted"], "test")
    holder.refresh()
    assert holder.current().scorer.version == versions["boosted"]


def test_a_corrupt_model_is_refused_and_the_previous_keeps_serving(models, caplog):
    settings, versions = models
    holder = ModelHolder(settings)
    registry.set_production(settings.models_dir, versions["logistic"], "test")
    holder.refresh()
    assert holder.current().scorer.version == versions["logistic"]
    (settings.models_dir / versions["boosted"] / registry.MODEL_FILE).write_bytes(b"not a pickle")
    registry.set_production(settings.models_dir, versions["boosted"], "test")
    with caplog.at_level(logging.ERROR, logger="online_api.model_holder"):
        holder.refresh()
    assert holder.current().scorer.version == versions["logistic"]
    assert f"refusing model {versions['boosted']}" in caplog.text


def test_a_model_the_feature_store_cannot_serve_is_refused(models, caplog):
    settings, versions = models

    def resolve(card: ModelCard) -> str:
        if card.model_kind == "boosted":
            raise ValueError("feature service 'churn_model_v1' does not serve user_activity:x")
        return "plan"

    holder = ModelHolder(settings, resolve)
    registry.set_production(settings.models_dir, versions["logistic"], "test")
    holder.refresh()
    assert holder.current().plan == "plan"
    registry.set_production(settings.models_dir, versions["boosted"], "test")
    with caplog.at_level(logging.ERROR, logger="online_api.model_holder"):
        holder.refresh()
    assert holder.current().scorer.version == versions["logistic"]
    assert "does not serve user_activity:x" in caplog.text


def test_watch_follows_the_alias_in_the_background(models):
    import asyncio

    settings, versions = models
    holder = ModelHolder(settings)

    async def promote_while_watching() -> None:
        watcher = asyncio.create_task(holder.watch())
        try:
            registry.set_production(settings.models_dir, versions["boosted"], "test")
            for _ in range(500):
                if holder.current() is not None:
                    break
                await asyncio.sleep(0.01)
        finally:
            watcher.cancel()

    asyncio.run(promote_while_watching())
    assert holder.current().scorer.version == versions["boosted"]


def test_a_refused_model_is_tried_again_after_a_back_off(models, caplog):
    """A passing cause (here: the store cannot resolve the features, twice) keeps the
    model out only until a retry, not until the alias moves again."""
    settings, versions = models
    now = [0.0]
    attempts = []

    def resolve(metadata: dict) -> str:
        attempts.append(now[0])
        if len(attempts) <= 2:
            raise ConnectionError("Redis is not up yet")
        return "plan"

    holder = ModelHolder(settings, resolve, clock=lambda: now[0])
    registry.set_production(settings.models_dir, versions["logistic"], "test")
    with caplog.at_level(logging.ERROR, logger="online_api.model_holder"):
        holder.refresh()
    assert holder.current() is None and "trying again in 5 s" in caplog.text
    now[0] = 4.9
    holder.refresh()
    assert attempts == [0.0]  # not before the back-off
    now[0] = 5.0
    holder.refresh()
    assert attempts == [0.0, 5.0] and holder.current() is None  # refused again: 10 s now
    now[0] = 14.9
    holder.refresh()
    now[0] = 15.0
    holder.refresh()
    assert attempts == [0.0, 5.0, 15.0]
    assert holder.current().scorer.version == versions["logistic"]
    now[0] = 1000.0
    holder.refresh()
    assert len(attempts) == 3  # loaded: nothing more to try
