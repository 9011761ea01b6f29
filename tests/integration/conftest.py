"""The integration tier's shared trained world, built once per test process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feature_repo.store import open_store
from tests.integration.world import TrainedWorld, build_trained_world


@pytest.fixture(scope="session")
def trained_world(tmp_path_factory, isolated_settings) -> Iterator[TrainedWorld]:
    """400 users × 120 days ending today, validated, featured, applied (offline only) and
    trained with the suite's tuning budget; copied by the modules that need a trained
    portal (``copy_world``), never changed in place."""
    settings = isolated_settings(tmp_path_factory.mktemp("trained_world"))
    try:
        yield build_trained_world(settings)
    finally:
        open_store(settings).teardown()
