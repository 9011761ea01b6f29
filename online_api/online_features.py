"""One user's (or a batch's) features from the online store, in Feast's Redis layout, without blocking.

The feature service named by the model is resolved against the Feast registry once,
when the model is loaded (``plan``), never on the request path. The plan also lays
out, once, what Feast's Redis online store reads for those features: every view of a
user lives in one Redis hash (key: Feast's serialized entity key and the project),
with a field per feature named by the murmur3 hash of ``view:feature`` (Feast's
``_mmh3``) and a ``_ts:view`` field per view. A request then costs one ``HMGET`` per
user of all the plan's fields, on Feast's own async Redis client (its connection
settings and timeouts), in one round trip for the batch.

Values decode as Feast decodes them (a ValueProto each, ``feast_value_type_to_python_type``
beyond the scalars), but each distinct stored value is parsed once per process: the
encoded bytes of a scalar determine its Python value, so later reads of the same bytes
are a dict lookup. ``FeatureStore.get_online_features`` does the same read plus
per-call registry and response-proto work that costs more than the read itself (see
docs/performance.md); tests/integration/test_api.py holds the two equal.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from feast import FeatureStore, FeatureView
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.infra.online_stores.redis import RedisOnlineStore, _versioned_fv_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type
from google.protobuf.timestamp_pb2 import Timestamp

from core.settings import Settings
from feature_repo.redis_encoding import bulk
from feature_repo.spec import ENTITY_KEY
from feature_repo.store import open_store

# Value kinds returned as they are; anything else goes through Feast's own conversion.
_SCALARS = frozenset(
    {"int32_val", "int64_val", "float_val", "double_val", "string_val", "bool_val"}
)
# Python values that cannot be changed in place, so one decoded object can serve every row.
_IMMUTABLE = (int, float, str, bytes, bool, datetime, type(None))
DECODED_MAX = 1 << 16  # distinct stored values kept decoded; beyond, parsed on every read


@dataclass(frozen=True)
class FeatureRow:
    values: dict[str, object]
    as_of: datetime | None


@dataclass(frozen=True)
class ViewFields:
    """One view's slice of a user's ``HMGET`` reply: its features, then its timestamp."""

    names: tuple[str, ...]
    start: int
    stamp: int  # index of the ``_ts:view`` field; the features are [start, stamp)


@dataclass(frozen=True)
class Plan:
    """What one model reads: per feature view, the feature names; the shortest view TTL;
    and (``OnlineFeatures.plan``) the hash fields of one ``HMGET`` per user."""

    views: tuple[tuple[FeatureView, tuple[str, ...]], ...]
    ttl: timedelta | None
    fields: tuple[bytes | str, ...] = ()
    slices: tuple[ViewFields, ...] = field(default=())
    packed: bytes = b""  # ``fields`` as the arguments of a Redis command (RESP bulk strings)

    def is_stale(self, row: FeatureRow, now: datetime) -> bool:
        """Older than the TTL: the offline point-in-time join would not use this row either."""
        return self.ttl is not None and row.as_of is not None and row.as_of < now - self.ttl


class _Decoded(dict):
    """Stored bytes → the Python value Feast returns for them, each parsed once."""

    def __missing__(self, raw: bytes) -> object:
        value = _python(Value.FromString(raw))
        if len(self) < DECODED_MAX and isinstance(value, _IMMUTABLE):
            self[raw] = value
        return value


class _Stamps(dict):
    """Stored ``_ts:view`` bytes → their instant, as Feast's online read makes it."""

    def __missing__(self, raw: bytes | None) -> datetime:
        stamp = Timestamp()
        if raw:  # no field: Feast's zero Timestamp, 1970-01-01
            stamp.ParseFromString(raw)
        value = datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1_000_000_000.0, tz=UTC)
        if len(self) < DECODED_MAX:
            self[raw] = value
        return value


class OnlineFeatures:
    """Fetches feature rows by user id; one FeatureStore per process, opened at start-up."""

    def __init__(self, settings: Settings, store: FeatureStore | None = None) -> None:
        self.store = store or open_store(settings, redis_timeout_ms=settings.api_redis_timeout_ms)
        online_store = self.store.provider.online_store
        if not isinstance(online_store, RedisOnlineStore):
            raise ValueError(f"the API reads Feast's Redis online store, not {online_store!r}")
        self._online_store = online_store
        self._project = self.store.config.project.encode("utf-8")
        self._key_head = self._entity_key_head()
        self._decoded = _Decoded({None: None, b"": None})  # absent field, empty ValueProto
        self._stamps = _Stamps()

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
            view_name, name = ref.split(":", 1)
            by_view.setdefault(view_name, []).append(name)
        views = tuple((self.store.get_feature_view(v), tuple(n)) for v, n in by_view.items())
        for view, names in views:
            absent = sorted(set(names) - {f.name for f in view.features})
            if absent:
                raise ValueError(f"feature view {view.name!r} has no {', '.join(absent)}")
        ttls = [view.ttl for view, _ in views if view.ttl and view.ttl > timedelta(0)]
        # The fields Feast's RedisOnlineStore.online_read asks for, all views in one HMGET.
        fields: list[bytes | str] = []
        slices = []
        for view, names in views:
            name = _versioned_fv_name(view, self.store.config)
            start = len(fields)
            fields += [_mmh3(f"{name}:{feature}") for feature in names]
            slices.append(ViewFields(names, start, len(fields)))
            fields.append(f"_ts:{name}")
        packed = b"".join(bulk(f.encode() if isinstance(f, str) else f) for f in fields)
        return Plan(views, min(ttls, default=None), tuple(fields), tuple(slices), packed)

    async def fetch(self, user_ids: list[str], plan: Plan) -> list[FeatureRow | None]:
        """Rows in the order of ``user_ids``; None where the store knows nothing of the user.

        A view's values count only with its timestamp: ``as_of`` is the newest stamp of
        the views that hold any value for the user."""
        replies = await self._hmget([self._key(user_id) for user_id in user_ids], plan)
        decoded, stamps = self._decoded.__getitem__, self._stamps
        out: list[FeatureRow | None] = []
        for reply in replies:
            row: dict[str, object] = {}
            as_of = None
            for view in plan.slices:
                values = list(map(decoded, reply[view.start : view.stamp]))
                row.update(zip(view.names, values, strict=True))
                if values.count(None) < len(values):
                    stamp = stamps[reply[view.stamp]]
                    as_of = stamp if as_of is None else max(as_of, stamp)
            out.append(None if as_of is None else FeatureRow(row, as_of))
        return out

    async def _hmget(self, keys: list[bytes], plan: Plan) -> list[list[bytes | None]]:
        """One ``HMGET`` of the plan's fields per key, in one round trip, on Feast's client.

        The command is written from the plan's pre-encoded fields (redis-py would encode
        69 arguments per user on every request) on a connection of the client's pool,
        with the client's retry policy and timeouts, as its pipeline does. A cluster
        client (no single pool) goes through its pipeline, which routes each key."""
        client = await self._online_store._get_client_async(self.store.config.online_store)
        pool = getattr(client, "connection_pool", None)
        if pool is None or not plan.packed:
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(key, plan.fields)
                return await pipe.execute()
        head = b"*%d\r\n$5\r\nHMGET\r\n" % (len(plan.fields) + 2)
        command = b"".join(head + bulk(key) + plan.packed for key in keys)

        async def exchange() -> list:
            try:
                await connection.send_packed_command(command)
                return [await connection.read_response() for _ in keys]
            except BaseException:  # replies may be left unread: never reuse the connection
                await connection.disconnect()
                raise

        connection = await pool.get_connection()
        try:
            return await connection.retry.call_with_retry(exchange, _ignore)
        finally:
            await pool.release(connection)

    async def aclose(self) -> None:
        """Close the async Redis client (Feast keeps it on its online store)."""
        client = getattr(self._online_store, "_client_async", None)
        if client is not None:
            await client.aclose()
            self._online_store._client_async = None

    def _key(self, user_id: str) -> bytes:
        """Feast's Redis key of a user: ``_redis_key``, with its fixed head computed once."""
        if self._key_head is None:
            return self._feast_key(user_id)
        encoded = user_id.encode("utf8")
        return b"".join((self._key_head, struct.pack("<I", len(encoded)), encoded, self._project))

    def _feast_key(self, user_id: str) -> bytes:
        entity = EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(string_val=user_id)])
        version = self.store.config.entity_key_serialization_version
        return _redis_key(
            self.store.config.project, entity, entity_key_serialization_version=version
        )

    def _entity_key_head(self) -> bytes | None:
        """What Feast's key of every user starts with (before the id's length and bytes),
        or None (then ``_feast_key`` per user) unless probes show the key is laid out so."""
        tail = len(self._project) + 4
        head = self._feast_key("")[:-tail]
        self._key_head = head
        probes = ("u000123", "ü-ñ:9.x", "x" * 300)
        if all(self._key(p) == self._feast_key(p) for p in probes):
            return head
        return None


async def _ignore(_: Exception) -> None:
    """The retry's failure callback: the failed exchange has disconnected already."""


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
