"""Materialize into Redis in Feast's own layout, an order of magnitude faster than Feast.

Feast's Redis store builds a ValueProto object per value and a redis-py command per row:
about 4,000 users/s with 67 features here, a limit of the client. This writer loads the
same rows (each user's newest row stamped in [start, end], as Feast's offline store picks
them) and encodes a whole record batch at once with numpy (``feature_repo.redis_encoding``),
with no Python object per value. What a reader sees is what ``RedisOnlineStore.
online_write_batch`` (``skip_dedup``) writes:

- the key: Feast's serialized entity key (version 3) followed by the project name;
- one field per feature: murmur3 of ``view:feature`` (4 bytes) holding the serialized
  ValueProto, empty for a null or a NaN as Feast's conversion makes them;
- the field ``_ts:view``: the row's timestamp as a serialized protobuf Timestamp;
- the store's ``key_ttl_seconds`` as the key's TTL, when one is set.

Feast sends an HSET (and an EXPIRE) per key, and so can this writer; but a 68-field HSET
costs Redis itself about 40 µs (each field is looked up in the growing listpack), which
caps any client near 25,000 users/s. So where the view is the only one whose fields live
on its entity's keys, each key is sent whole instead: ``RESTORE key ttl payload REPLACE``
with the listpack Redis would build, in DUMP's format (type, listpack, RDB version,
CRC-64). Before the first batch a probe key checks the encoding against the server's own
DUMP; a server that answers otherwise (an older Redis, another hash encoding) gets HSETs.

``tests/integration/test_online_writer.py`` compares every key and field with what Feast's
own ``materialize`` writes, in both modes, so readers (``get_online_features``, ``feast
serve``, the API) cannot tell which wrote them. The rows stream: one DuckDB pass finds
each user's newest stamp, then each stamp's rows arrive in record batches, so memory
holds a batch and the (user, stamp) index, not the table.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import redis
from feast import FeatureView, ValueType
from feast.infra.online_stores.helpers import _mmh3
from feast.infra.online_stores.redis import _versioned_fv_name
from feast.repo_config import RepoConfig

from core import partitions
from core.settings import Settings
from core.sql_engine import connect, quote_path
from core.timeline import day_of
from feature_repo import redis_encoding as enc
from feature_repo.redis_encoding import CRLF, Part, Piece
from feature_repo.spec import TIMESTAMP_FIELD

# Users per record batch: about 1.6 MB of protocol per 1,000 users with 67 features.
BATCH_ROWS = 8192
# RDB's type of a hash encoded as a listpack (Redis 7.0 and later).
RDB_TYPE_HASH_LISTPACK = 16

_TAGS = {  # ValueProto's field number << 3 | wire type, for the kinds encoded here
    ValueType.STRING: 0x12,  # string_val = 2, length-delimited
    ValueType.INT64: 0x20,  # int64_val = 4, varint
    ValueType.DOUBLE: 0x29,  # double_val = 5, 64-bit
}
Mode = Literal["restore", "hset"]


class UnsupportedLayoutError(ValueError):
    """A feature view or store this writer cannot write exactly as Feast would."""


@dataclass(frozen=True)
class Written:
    """What one materialize wrote: users (one key each), the distinct stamps they carry,
    and how the keys were sent."""

    users: int
    stamps: int
    mode: Mode


def materialize_view(
    config: RepoConfig,
    view: FeatureView,
    start: datetime,
    end: datetime,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    whole_keys: bool = True,
) -> Written:
    """Write each user's newest row of ``view`` stamped in [``start``, ``end``] to Redis.

    ``whole_keys``: no other feature view keeps fields on these keys, so a key may be
    replaced whole (RESTORE) rather than field by field (HSET). ``progress(done, total)``
    counts users. A Redis error reply stops the run with it.
    """
    layout = Layout.of(config, view)
    total, stamps, batches = newest_rows(settings, source_root(view), layout, start, end)
    # A connection of its own (URL, password, TLS as the settings say), closed at the end.
    connection = redis.Redis.from_url(settings.redis_url).connection_pool.make_connection()
    done = pending = 0
    try:
        version = dump_version(connection) if whole_keys else None
        for batch in batches:
            payload, replies = layout.commands(batch, version)
            connection.send_packed_command([payload], check_health=False)
            _read_replies(connection, pending)  # the previous batch's, read while Redis works
            pending = replies
            done += batch.num_rows
            if progress:
                progress(done, total)
        _read_replies(connection, pending)
    finally:
        connection.disconnect()
    return Written(done, stamps, "hset" if version is None else "restore")


def _read_replies(connection: redis.connection.ConnectionInterface, count: int) -> None:
    for _ in range(count):
        connection.read_response()  # raises the first error reply (OOM, WRONGTYPE, …)


def dump_version(connection: redis.connection.ConnectionInterface) -> bytes | None:
    """The RDB version of the server's DUMP payloads, if its DUMP of a small hash is the
    payload this module builds for it (type, listpack, version, CRC-64); else None."""
    key = b"churn:online-writer-probe:" + uuid.uuid4().hex.encode()
    connection.send_command("HSET", key, "ab", "cd")
    connection.read_response()
    try:
        connection.send_command("DUMP", key)
        dump = connection.read_response()
    finally:
        connection.send_command("DEL", key)
        connection.read_response()
    if not isinstance(dump, bytes) or len(dump) < 11:
        return None
    version = dump[-10:-8]
    ours = _dump_payload([b"ab"], [b"cd"], version)
    return version if ours == dump else None


def _dump_payload(fields: list[bytes], values: list[bytes], version: bytes) -> bytes:
    """One key's DUMP payload, built as ``Layout.commands`` builds them (for the probe)."""
    entries: list[Part] = []
    for field, value in zip(fields, values, strict=True):
        entries += [enc.listpack_constant_entry(field), enc.listpack_constant_entry(value)]
    parts = _rdb_parts(entries, 2 * len(fields), version, 1)
    data = enc.padded(parts, 1)
    crc = int(enc.crc64(data)[0])
    return bytes(data[0][0, : data[1][0]]) + crc.to_bytes(8, "little")


def _rdb_parts(entries: list[Part], count: int, version: bytes, n: int) -> list[Part]:
    """DUMP's payload before its checksum: type, length-prefixed listpack, RDB version."""
    packed = enc.listpack(entries, count, n)
    return [bytes([RDB_TYPE_HASH_LISTPACK]), enc.rdb_length(enc.row_lengths(packed, n)),
            *packed, version]  # fmt: skip


def source_root(view: FeatureView) -> Path:
    """The registered view's Parquet directory: what Feast's offline store reads."""
    path = getattr(view.batch_source, "path", None)
    if not path or not Path(path).is_dir():
        raise UnsupportedLayoutError(
            f"the source of {view.name} is not a local Parquet directory ({path!r}): "
            "set CHURN_MATERIALIZE_WRITER=feast"
        )
    return Path(path)


def newest_rows(
    settings: Settings, root: Path, layout: Layout, start: datetime, end: datetime
) -> tuple[int, int, Iterator[pa.RecordBatch]]:
    """(users, distinct stamps, record batches): each user's newest row stamped in
    [start, end], both ends included as in Feast's ``pull_latest_from_table_or_query``.

    A row of day D is stamped D+1 00:00 UTC, so only the partitions of days
    [start - 1 day, end] can hold such rows; the stamp filter decides.
    """
    days = [d for d in partitions.partition_days(root) if day_of(start) <= d <= end.date()]
    files = partitions.partition_files(root, days)
    if not files:
        return 0, 0, iter(())
    con = connect(settings)
    source = f"read_parquet([{', '.join(quote_path(f) for f in files)}])"
    key = layout.join_key
    con.execute(
        f"CREATE TEMP TABLE newest AS SELECT {key}, max({TIMESTAMP_FIELD}) AS stamp "
        f"FROM {source} WHERE {TIMESTAMP_FIELD} BETWEEN $start AND $end GROUP BY {key}",
        {"start": start, "end": end},
    )
    counts = con.execute(
        "SELECT stamp, count(*) FROM newest GROUP BY stamp ORDER BY stamp DESC"
    ).fetchall()
    columns = ", ".join(f'f."{c}"' for c in (key, TIMESTAMP_FIELD, *layout.features))

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for stamp, _ in counts:
                # Row-group statistics skip the files of other stamps.
                reader = con.sql(
                    f"SELECT {columns} FROM {source} f "
                    f"SEMI JOIN (SELECT {key} FROM newest WHERE stamp = $stamp) n "
                    f"ON f.{key} = n.{key} WHERE f.{TIMESTAMP_FIELD} = $stamp",
                    params={"stamp": stamp},
                ).to_arrow_reader(BATCH_ROWS)
                yield from reader
        finally:
            con.close()

    return sum(n for _, n in counts), len(counts), batches()


@dataclass(frozen=True)
class Layout:
    """How Feast's Redis store lays out one feature view of one project."""

    join_key: str
    project: bytes
    features: tuple[str, ...]
    kinds: tuple[ValueType, ...]
    fields: tuple[bytes, ...]  # murmur3 of "view:feature", as Feast names hash fields
    ts_field: bytes
    ttl_seconds: int | None

    @classmethod
    def of(cls, config: RepoConfig, view: FeatureView) -> Layout:
        """The layout ``config`` (the filled feature_store.yaml) gives ``view``."""
        store = config.online_store
        if getattr(store, "type", None) != "redis" or store.redis_type != "redis":
            raise UnsupportedLayoutError(
                "the fast writer writes one Redis server (not a cluster or sentinel): "
                "set CHURN_MATERIALIZE_WRITER=feast"
            )
        if config.entity_key_serialization_version != 3:
            raise UnsupportedLayoutError("the fast writer writes entity keys of version 3 only")
        keys = list(view.entity_columns)
        if len(keys) != 1 or keys[0].dtype.to_value_type() != ValueType.STRING:
            raise UnsupportedLayoutError(
                f"{view.name}: the fast writer needs one string join key, not {keys}"
            )
        kinds = tuple(f.dtype.to_value_type() for f in view.features)
        if unknown := [f.name for f, k in zip(view.features, kinds, strict=True) if k not in _TAGS]:
            raise UnsupportedLayoutError(
                f"{view.name}: the fast writer encodes int64, double and string features, not "
                f"{', '.join(unknown[:3])}: set CHURN_MATERIALIZE_WRITER=feast"
            )
        name = _versioned_fv_name(view, config)
        return cls(
            join_key=keys[0].name,
            project=config.project.encode(),
            features=tuple(f.name for f in view.features),
            kinds=kinds,
            fields=tuple(_mmh3(f"{name}:{f.name}") for f in view.features),
            ts_field=f"_ts:{name}".encode(),
            ttl_seconds=store.key_ttl_seconds or None,
        )

    def key_parts(self, ids: pa.Array) -> tuple[list[Part], np.ndarray]:
        """Feast's Redis key of each id, as parts, and the keys' lengths.

        ``serialize_entity_key`` (version 3): the count of join keys, then per key its
        value type, length and name, then per value its type, length and bytes (all
        little-endian uint32); the project's name follows.
        """
        name = self.join_key.encode()
        head = struct.pack("<III", 1, ValueType.STRING.value, len(name)) + name
        head += struct.pack("<I", ValueType.STRING.value)
        data, lengths = enc.strings(ids)
        parts: list[Part] = [head, enc.little_endian(lengths, 4), (data, lengths), self.project]
        return parts, enc.row_lengths(parts, len(lengths))

    def commands(self, batch: pa.RecordBatch, version: bytes | None = None) -> tuple[bytes, int]:
        """Every row of ``batch`` as Redis commands, and how many replies they bring:
        with a DUMP ``version``, one RESTORE per key; else an HSET (and an EXPIRE) per key.
        A batch holding a value too long for a one-byte listpack header is sent as HSETs."""
        n = batch.num_rows
        key, key_length = self.key_parts(batch.column(self.join_key))
        key_bulk = [b"$", enc.decimal(key_length), CRLF, *key, CRLF]
        values = [_timestamps(batch)] + [
            _values(batch.column(name), kind)
            for name, kind in zip(self.features, self.kinds, strict=True)
        ]
        names = [self.ts_field, *self.fields]
        if version is not None and all(
            enc.row_lengths(v, n).max(initial=0) <= enc.SHORT_STRING for v in values
        ):
            return enc.join(self._restore(key_bulk, names, values, version, n), n), n
        parts: list[Part] = [b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * len(names)), *key_bulk]
        for name, value in zip(names, values, strict=True):
            parts += [enc.bulk(name), *enc.bulk_parts(value, n)]
        if self.ttl_seconds is None:
            return enc.join(parts, n), n
        parts += [b"*3\r\n$6\r\nEXPIRE\r\n", *key_bulk, enc.bulk(str(self.ttl_seconds).encode())]
        return enc.join(parts, n), 2 * n

    def _restore(
        self,
        key_bulk: list[Part],
        names: list[bytes],
        values: list[list[Piece]],
        version: bytes,
        n: int,
    ) -> list[Part]:
        """``RESTORE key ttl payload REPLACE``: the whole hash as DUMP would give it."""
        entries: list[Part] = []
        for name, value in zip(names, values, strict=True):
            entries += [enc.listpack_constant_entry(name), *enc.listpack_entry(value, n)]
        payload = enc.padded(_rdb_parts(entries, 2 * len(names), version, n), n)
        checksum = enc.little_endian(enc.crc64(payload), 8)
        ttl_ms = str((self.ttl_seconds or 0) * 1000).encode()
        return [b"*5\r\n$7\r\nRESTORE\r\n", *key_bulk, enc.bulk(ttl_ms),
                *enc.bulk_parts([payload, checksum], n), enc.bulk(b"REPLACE")]  # fmt: skip


def _values(column: pa.Array, kind: ValueType) -> list[Piece]:
    """The serialized ValueProto of each value: tag and payload, nothing for a null.

    Feast converts through numpy and pandas: a NaN is a null there too.
    """
    valid = np.asarray(column.is_valid())
    if kind == ValueType.DOUBLE:
        values = column.fill_null(0.0).to_numpy(zero_copy_only=False).astype("<f8")
        valid &= ~np.isnan(values)
        data = (values.view(np.uint8).reshape(-1, 8), np.where(valid, 8, 0))
    elif kind == ValueType.INT64:
        values = column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        data = enc.masked(enc.varint(values.view(np.uint64)), valid)
    else:
        text, lengths = enc.strings(column)
        size = enc.masked(enc.varint(lengths.astype(np.uint64)), valid)
        return [enc.byte(_TAGS[kind], valid), size, enc.masked((text, lengths), valid)]
    return [enc.byte(_TAGS[kind], valid), data]


def _timestamps(batch: pa.RecordBatch) -> list[Piece]:
    """``google.protobuf.Timestamp`` as ``FromDatetime`` fills it: seconds (field 1) and
    nanos (field 2), each left out when zero, as proto3 does."""
    stamps = batch.column(TIMESTAMP_FIELD).cast(pa.timestamp("us", tz="UTC"))
    micros = stamps.cast(pa.int64()).to_numpy(zero_copy_only=False)
    seconds, rest = np.divmod(micros, 1_000_000)
    nanos = rest * 1000
    return [
        enc.byte(0x08, seconds != 0),
        enc.masked(enc.varint(seconds.view(np.uint64)), seconds != 0),
        enc.byte(0x10, nanos != 0),
        enc.masked(enc.varint(nanos.astype(np.uint64)), nanos != 0),
    ]
