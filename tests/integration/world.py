"""A small portal for integration tests: demo data through the gates into Feast's stores."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from core.settings import Settings
from feature_repo.feast_cli import apply_definitions
from feature_repo.store import materialize
from ingestion.generate import generate_demo_data, write_demo_data
from ingestion.prepare import build_user_daily
from ingestion.rolling_features import build_rolling_features
from ingestion.validate import run_validation

# Worlds end today: the API and the batch refuse features older than the view's TTL.
TODAY = datetime.combine(datetime.now(UTC).date(), time.min, UTC)


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
