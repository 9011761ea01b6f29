"""A small portal for integration tests: demo data through the gates into Feast's stores.

``build_world`` makes one for a test; the suite's trained world (``trained_world`` in
``tests/integration/conftest.py``) is built once per test process, and a module that only
needs *a* trained portal takes a copy of it (``copy_world``): its own data dir, artifacts,
Feast project and Redis keys, so what it changes no other module sees.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from core.settings import Settings
from feature_repo.feast_cli import apply_definitions
from feature_repo.store import materialize
from ingestion.generate import generate_demo_data, write_demo_data
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features
from ingestion.validate import run_validation
from training.train import TrainResult, train_models

# Worlds end today: the API and the batch refuse features older than the view's TTL.
TODAY = datetime.combine(datetime.now(UTC).date(), time.min, UTC)
# The shared trained world: users, days (ending TODAY) and seed.
SHARED_USERS, SHARED_DAYS, SHARED_SEED = 400, 120, 6


def build_world(
    settings: Settings,
    users: int,
    days: int,
    end: datetime = TODAY,
    seed: int = 6,
    online: bool = True,
    **scenario: object,
) -> None:
    """Generate ``days`` ending at ``end``, validate, build features, apply; with ``online``,
    materialize up to ``end``. ``scenario`` goes to the generator (scenario, drift_day)."""
    start = end.date() - timedelta(days=days)
    data = generate_demo_data(n_users=users, days=days, seed=seed, start=start, **scenario)
    write_demo_data(data, settings)
    assert run_validation(settings).passed
    build_user_daily(settings, now=end)
    build_rolling_features(settings)
    apply_definitions(settings)
    if online:
        materialize(settings, end=end)


@dataclass(frozen=True)
class TrainedWorld:
    """The shared world: offline stores applied under ``settings``, both kinds trained as of
    ``end`` (none promoted). Read it only through ``copy_world``."""

    settings: Settings
    trained: TrainResult
    end: datetime = TODAY


def build_trained_world(settings: Settings) -> TrainedWorld:
    build_world(settings, SHARED_USERS, SHARED_DAYS, seed=SHARED_SEED, online=False)
    return TrainedWorld(settings, train_models(settings, now=TODAY))


def copy_world(world: TrainedWorld, settings: Settings, online: bool = True) -> TrainResult:
    """``world``'s data and model registry under ``settings``' dirs, its definitions applied
    to ``settings``' Feast project and, with ``online``, materialized up to its end; what
    was trained (the versions are the copied registry's), a copy of its own.

    The copy is validated again: the gate knows a raw day by its file's identity, which a
    copy does not keep, and after this a copy's next validation finds nothing new.
    """
    source = world.settings
    feast_dir = source.registry_path.parent  # the source's project: each copy applies its own

    def without_registry(folder: str, _: list[str]) -> list[str]:
        return [feast_dir.name] if Path(folder) == feast_dir.parent else []

    shutil.copytree(source.data_dir, settings.data_dir, ignore=without_registry)
    shutil.copytree(source.artifacts_dir, settings.artifacts_dir)
    assert run_validation(settings).passed
    apply_definitions(settings)
    if online:
        materialize(settings, end=world.end)
    return copy.deepcopy(world.trained)
