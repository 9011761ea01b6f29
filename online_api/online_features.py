"""One user's (or a batch's) features from the online store, through Feast, without blocking.

The feature service named by the model is resolved against the Feast registry once,
when the model is loaded (``plan``), never on the request path; a request then costs
one async read per feature view through Feast's own online store (its key layout,
its value encoding) and no registry lookup. ``FeatureStore.get_online_features``
does the same read plus per-call registry and response-proto work that costs more
than the read itself (see docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from feast import FeatureStore, FeatureView
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type

from core.settings import Settings
from feature_repo.spec import ENTITY_KEY
from feature_repo.store import open_store

# Value kinds returned as they are; anything else goes through Feast's own conversion.
_SCALARS = frozenset(
    {"int32_val", "int64_val", "float_val", "double_val", "string_val", "bool_val"}
)


@dataclass(frozen=True)
class FeatureRow:
    values: dict[str, object]
    as_of: datetime | None


@dataclass(frozen=True)
class Plan:
    """What one model reads: per feature view, the feature names; and the shortest view TTL."""

    views: tuple[tuple[FeatureView, tuple[str, ...]], ...]
    ttl: timedelta | None

    def is_stale(self, row: FeatureRow, now: datetime) -> bool:
        """Older than the TTL: the offline point-in-time join would not use this row either."""
        return self.ttl is not None and row.as_of is not None and row.as_of < now - self.ttl


class OnlineFeatures:
    """Fetches feature rows by user id; one FeatureStore per process, opened at start-up."""

    def __init__(self, settings: Settings, store: FeatureStore | None = None) -> None:
        self.store = store or open_store(settings, redis_timeout_ms=settings.api_redis_timeout_ms)

    def plan(self, feature_service: str, refs: list[str], also: Sequence[str] = ()) -> Plan:
        """Resolve ``refs`` (``view:feature``) of ``feature_service`` in the registry, plus
        ``also``: refs serving reads for itself, from their feature view, whether or not
        the model uses them (rows then carry them beside the model's features).

        Raises ValueError when the service does not serve ``refs`` or a view lacks one
        of ``also``: such a model cannot be served from this feature store.
        """
        service = self.store.get_feature_service(feature_service)
        served = {
            f"{p.name_to_use()}:{f.name}"
            for p in service.feature_view_projections
            for f in p.features
        }
        missing = [ref for ref in refs if ref not in served]
        if missing:
            raise ValueError(
                f"feature service {feature_service!r} does not serve {', '.join(missing[:5])}"
            )
        by_view: dict[str, list[str]] = {}
        for ref in [*refs, *(ref for ref in also if ref not in refs)]:
            view, name = ref.split(":", 1)
            by_view.setdefault(view, []).append(name)
        views = tuple((self.store.get_feature_view(v), tuple(n)) for v, n in by_view.items())
        for view, names in views:
            absent = sorted(set(names) - {f.name for f in view.features})
            if absent:
                raise ValueError(f"feature view {view.name!r} has no {', '.join(absent)}")
        ttls = [view.ttl for view, _ in views if view.ttl and view.ttl > timedelta(0)]
        return Plan(views, min(ttls, default=None))

    async def fetch(self, user_ids: list[str], plan: Plan) -> list[FeatureRow | None]:
        """Rows in the order of ``user_ids``; None where the store knows nothing of the user."""
        keys = [
            EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(string_val=u)]) for u in user_ids
        ]
        values: list[dict[str, object]] = [{} for _ in user_ids]
        stamps: list[datetime | None] = [None] * len(user_ids)
        provider = self.store.provider
        for view, names in plan.views:
            # Feast appends its timestamp field to the list it is given: pass a copy.
            read = await provider.online_read_async(self.store.config, view, keys, list(names))
            for i, (stamp, features) in enumerate(read):
                row, found = values[i], False
                for name in names:  # _python, inlined: this loop runs for every value served
                    value = features.get(name) if features else None
                    kind = value.WhichOneof("val") if value is not None else None
                    if kind is None or kind == "null_val":
                        row[name] = None
                        continue
                    row[name] = getattr(value, kind) if kind in _SCALARS else _python(value)
                    found = True
                if found and stamp is not None:
                    stamps[i] = stamp if stamps[i] is None else max(stamps[i], stamp)
        return [
            FeatureRow(row, stamp) if any(v is not None for v in row.values()) else None
            for row, stamp in zip(values, stamps, strict=True)
        ]

    async def aclose(self) -> None:
        """Close the async Redis client (Feast keeps it on its online store)."""
        online_store = self.store.provider.online_store
        client = getattr(online_store, "_client_async", None)
        if client is not None:
            await client.aclose()
            online_store._client_async = None


def _python(value: Value | None) -> object:
    """A Feast ValueProto as the Python value ``get_online_features`` would return."""
    if value is None:
        return None
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    if kind in _SCALARS:
        return getattr(value, kind)
    return feast_value_type_to_python_type(value)
