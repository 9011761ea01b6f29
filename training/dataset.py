"""The point-in-time training set: label rows joined to features through Feast only.

The label rows are the entity dataframe; ``get_historical_features`` with the
feature service takes, for each (user, T), the newest feature row stamped ≤ T
within the view TTL. No side path recomputes features for training.
``newest_rows_sql`` is that rule in SQL, for what Feast's join does not return (the
stamp of the row it picked) and for reading the offline table as Feast would.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from feast import FeatureStore

from core.settings import Settings
from core.sql_engine import utc_timestamps
from feature_repo.service_name import FEATURE_SERVICE as FEATURE_SERVICE  # read from here too
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from feature_repo.store import open_offline_store


@dataclass(frozen=True)
class TrainingSet:
    """Joined rows, the rows Feast had no features for, and the ordered feature references."""

    frame: pd.DataFrame
    missing: pd.DataFrame
    feature_refs: list[str]

    @property
    def feature_names(self) -> list[str]:
        return [ref.split(":", 1)[1] for ref in self.feature_refs]


def feature_refs(store: FeatureStore, service: str = FEATURE_SERVICE) -> list[str]:
    """The service's features as ``view:feature``, in the registered schema's order."""
    projections = store.get_feature_service(service).feature_view_projections
    return [f"{p.name_to_use()}:{f.name}" for p in projections for f in p.features]


def newest_rows_sql(
    features: str,
    as_of: datetime,
    ttl: timedelta,
    columns: Sequence[str] = (),
    users: str | None = None,
) -> str:
    """Per user of relation ``features``, the row Feast's point-in-time join picks at T.

    The newest row with T - ttl ≤ ``event_timestamp`` ≤ T: Feast keeps a row while
    stamp + ttl ≥ T, so both bounds are inclusive. ``ttl`` is the registered view's
    (``feature_repo.store.view_ttl``). Returns ``user_id``, ``features_as_of`` (the
    row's stamp) and ``columns``, by user id; only users of relation ``users`` if given.
    """
    selected = ", ".join([ENTITY_KEY, f"{TIMESTAMP_FIELD} AS features_as_of", *columns])
    among = f"\n  AND {ENTITY_KEY} IN (SELECT {ENTITY_KEY} FROM {users})" if users else ""
    return f"""
SELECT {selected}
FROM {features}
WHERE {TIMESTAMP_FIELD} <= TIMESTAMPTZ '{as_of.isoformat()}'
  AND {TIMESTAMP_FIELD} >= TIMESTAMPTZ '{(as_of - ttl).isoformat()}'{among}
QUALIFY row_number() OVER (PARTITION BY {ENTITY_KEY} ORDER BY {TIMESTAMP_FIELD} DESC) = 1
ORDER BY {ENTITY_KEY}
"""


def point_in_time_join(
    store: FeatureStore,
    entity_rows: pd.DataFrame,
    refs: list[str],
    chunk_rows: int = 250_000,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Features for each entity row as of its timestamp, joined in chunks of whole as-of times.

    Chunks keep Feast's memory bounded; splitting on timestamps keeps each T in
    one chunk. Extra columns of ``entity_rows`` (the label) are carried through.
    """
    rows = entity_rows.sort_values([TIMESTAMP_FIELD, ENTITY_KEY]).reset_index(drop=True)
    stamps = rows[TIMESTAMP_FIELD]
    bounds = [0]
    while bounds[-1] < len(rows):
        end = min(bounds[-1] + chunk_rows, len(rows))
        # Extend to the end of this T so one as-of time never spans two chunks.
        end = int(stamps.searchsorted(stamps.iloc[end - 1], side="right"))
        bounds.append(end)
    parts = []
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        job = store.get_historical_features(entity_df=rows.iloc[lo:hi], features=refs)
        # Sorted per chunk: chunks follow each other in time, so the concat is sorted
        # without a second full-size copy.
        part = job.to_df()
        part[TIMESTAMP_FIELD] = utc_timestamps(part[TIMESTAMP_FIELD])  # Spark's come naive
        parts.append(part.sort_values([TIMESTAMP_FIELD, ENTITY_KEY]))
        if progress is not None:
            progress(i + 1, len(bounds) - 1)
    if not parts:
        return rows.iloc[0:0]
    return pd.concat(parts, ignore_index=True)


def training_set(
    settings: Settings,
    labels: pd.DataFrame,
    service: str = FEATURE_SERVICE,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingSet:
    """Join ``labels`` to the service's features; rows without any feature are set apart.

    A row whose user has no feature row inside the TTL comes back all-null from
    Feast; it is reported in ``missing``, never filled in.
    """
    store = open_offline_store(settings)
    refs = feature_refs(store, service)
    joined = point_in_time_join(store, labels, refs, progress=progress)
    frame, missing = without_missing(joined, [ref.split(":", 1)[1] for ref in refs])
    return TrainingSet(frame=frame, missing=missing, feature_refs=refs)


def without_missing(joined: pd.DataFrame, names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows with at least one feature, the keys of those Feast had none for): a user
    without a feature row inside the TTL comes back all-null; it is set apart, never filled."""
    no_features = joined[names].isna().all(axis=1)
    frame = joined[~no_features].reset_index(drop=True) if no_features.any() else joined
    return frame, joined.loc[no_features, [ENTITY_KEY, TIMESTAMP_FIELD]].reset_index(drop=True)
