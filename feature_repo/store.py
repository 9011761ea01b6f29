"""Feast from Python: the store for given settings, and ``materialize``.

``feature_store.yaml`` stays the one description of the store: it is read here
with its ``${CHURN_…}`` variables filled from the settings object
(``feature_repo.config``), so the CLI, jobs and tests get exactly what ``feast``
gets from the environment.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import ibis
from feast import FeatureStore, FeatureView
from feast.repo_config import RepoConfig

from core.settings import Settings
from feature_repo.config import REPO_DIR, filled_config
from feature_repo.online_writer import materialize_view
from feature_repo.spec import FEATURE_VIEW

# Feast resets warning filters on import; ibis (inside Feast's DuckDB store) then
# warns about a DuckDB API rename on every query. Not ours to fix, not news.
warnings.filterwarnings("ignore", message=".*fetch_arrow_table", category=DeprecationWarning)


def repo_config(settings: Settings, redis_timeout_ms: int | None = None) -> RepoConfig:
    """``feature_store.yaml`` with its variables filled from ``settings``.

    ``redis_timeout_ms`` gives the Redis client socket timeouts (the API's).
    """
    config = RepoConfig(**filled_config(settings, redis_timeout_ms))
    config.repo_path = REPO_DIR
    return config


class EngineMismatchError(RuntimeError):
    """The registry's offline source is for another engine than ``CHURN_ENGINE``."""


def open_store(settings: Settings, redis_timeout_ms: int | None = None) -> FeatureStore:
    """A FeatureStore for these settings (the registry must exist: ``churn features apply``)."""
    _cap_offline_store_memory(settings)
    config = repo_config(settings, redis_timeout_ms)
    return FeatureStore(repo_path=str(REPO_DIR), config=config)


def open_offline_store(settings: Settings) -> FeatureStore:
    """``open_store`` for the offline store's work (joins, materialize), checked against
    the engine: Feast's Spark store refuses a FileSource (and DuckDB a SparkSource) with
    an error that does not say how to fix it.
    """
    # Imported here: the API opens the store too, and never needs Spark's source class.
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    if settings.engine == "spark":
        # Our session first, so that Feast's store and compute engine take it: theirs would
        # start Python workers with the system python3, which has no Feast and no pandas.
        from core.spark_engine import spark_session

        spark_session(settings)
    store = open_store(settings)
    source = store.get_feature_view(FEATURE_VIEW).batch_source
    applied = "spark" if isinstance(source, SparkSource) else "duckdb"
    if applied != settings.engine:
        raise EngineMismatchError(
            f"the Feast registry was applied with CHURN_ENGINE={applied}, this run uses "
            f"{settings.engine}: run `churn features apply` with CHURN_ENGINE={settings.engine}"
        )
    return store


def view_ttl(store: FeatureStore) -> timedelta:
    """The TTL of the registered feature view: how old a row Feast's point-in-time join
    still picks, and the range ``materialize`` loads.

    The registered one, not ``settings.feature_ttl_days``: Feast applies what
    ``feast apply`` registered, and the setting may have moved on since. Every
    derivation of "the row served at T" outside Feast uses this one.
    """
    ttl = store.get_feature_view(FEATURE_VIEW).ttl
    if ttl is None or ttl <= timedelta(0):
        raise ValueError(
            f"the registered feature view {FEATURE_VIEW} has no TTL ({ttl!r}): "
            "run `churn features apply`"
        )
    return ttl


def _cap_offline_store_memory(settings: Settings) -> None:
    """Give Feast's DuckDB store (ibis' default backend) the same memory cap as our SQL.

    Uncapped, DuckDB may take 80 % of RAM for a point-in-time join; capped, it spills.
    """
    # fetchall() completes the statement: DuckDB refuses new work while a result is open.
    ibis.get_backend().raw_sql(f"SET memory_limit = '{settings.duckdb_memory_bytes}B'").fetchall()


def materialize(
    settings: Settings,
    end: datetime | None = None,
    start: datetime | None = None,
    incremental: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[datetime | None, datetime]:
    """Load the newest feature row of every user up to ``end`` (default now) into Redis.

    By default the range is the registered view TTL before ``end``: every row that may still
    be served is (re)loaded, so a day built late, or rebuilt after a fix, reaches
    Redis too. ``incremental`` is Feast's ``materialize-incremental`` instead: from
    the last materialized instant, which skips rows stamped before it that were
    written after it. Returns the range loaded (start is None when incremental).
    ``progress(done, total)`` counts users (the fast writer's only).
    """
    end = end or datetime.now(UTC)
    store = open_offline_store(settings)
    if not _fast_writer(settings):
        if incremental:
            store.materialize_incremental(end_date=end)
            return None, end
        start = start or end - view_ttl(store)
        store.materialize(start_date=start, end_date=end)
        return start, end
    view = store.get_feature_view(FEATURE_VIEW)
    since = (view.most_recent_end_time if incremental else start) or end - view_ttl(store)
    materialize_view(store.config, view, since, end, settings, progress, _alone(store, view))
    # What Feast's materialize records: materialize-incremental starts from it.
    store.registry.apply_materialization(view, store.project, since, end)
    return (None if incremental else since), end


def _alone(store: FeatureStore, view: FeatureView) -> bool:
    """No other feature view keeps fields on ``view``'s entity keys (Feast puts every view
    of an entity in the same Redis hash), so the writer may replace a key whole."""
    keys = {c.name for c in view.entity_columns}
    return not any(
        keys & {c.name for c in other.entity_columns}
        for other in store.list_feature_views()
        if other.name != view.name
    )


def _fast_writer(settings: Settings) -> bool:
    """Our writer where it writes Feast's layout exactly: one Redis server, local Parquet."""
    return (
        settings.materialize_writer == "fast"
        and settings.engine == "duckdb"
        and not settings.redis_cluster
    )


def online_feature_rows(
    settings: Settings, user_ids: list[str], features: list[str], batch: int = 5000
) -> dict[str, list]:
    """Online values of ``features`` (``view:feature`` refs) for ``user_ids``, in batches."""
    store = open_store(settings)
    out: dict[str, list] = {}
    for i in range(0, len(user_ids), batch):
        rows = [{"user_id": u} for u in user_ids[i : i + batch]]
        part = store.get_online_features(features=features, entity_rows=rows).to_dict()
        for key, values in part.items():
            out.setdefault(key, []).extend(values)
    return out
