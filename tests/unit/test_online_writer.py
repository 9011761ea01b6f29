"""The fast writer's protocol bytes against Feast's own encoding, value by value.

The oracle is Feast's code: the key from ``_redis_key``, each value from
``python_values_to_proto_values`` (what ``materialize`` converts through), the stamp
from ``Timestamp.FromDatetime``. The commands are parsed back with hiredis, whose reader
reads the protocol's arrays of bulk strings whichever way they travel.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import hiredis
import numpy as np
import pyarrow as pa
import pytest
from feast import ValueType
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from google.protobuf.timestamp_pb2 import Timestamp

from feature_repo.online_writer import Layout
from feature_repo.redis_encoding import crc64, decimal, rdb_length, varint

FEATURES = ("count_7d", "minutes_7d", "plan")
KINDS = (ValueType.INT64, ValueType.DOUBLE, ValueType.STRING)


def _layout(ttl: int | None) -> Layout:
    return Layout(
        join_key="user_id",
        project=b"churn_unit",
        features=FEATURES,
        kinds=KINDS,
        fields=tuple(_mmh3(f"user_activity:{f}") for f in FEATURES),
        ts_field=b"_ts:user_activity",
        ttl_seconds=ttl,
    )


def _batch() -> pa.RecordBatch:
    base = datetime(2026, 3, 1, tzinfo=UTC)
    return pa.RecordBatch.from_pydict(
        {
            "user_id": ["u000001", "ü-2", "", "a" * 300, "u5"],
            "event_timestamp": pa.array(
                [
                    base,
                    base + timedelta(microseconds=1),
                    base - timedelta(days=20000),
                    datetime(1970, 1, 1, tzinfo=UTC),
                    base + timedelta(seconds=1.5),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "count_7d": pa.array([0, -1, 2**62, None, 127], pa.int64()),
            "minutes_7d": pa.array([0.0, -0.0, math.nan, None, math.inf], pa.float64()),
            "plan": pa.array(["free", "", None, "prémium", "x" * 200], pa.string()),
        }
    )


def _commands(payload: bytes) -> list[list[bytes]]:
    reader = hiredis.Reader()
    reader.feed(payload)
    out = []
    while (command := reader.gets()) is not False:
        out.append(command)
    return out


def _feast_values(batch: pa.RecordBatch, name: str, kind: ValueType) -> list[bytes]:
    column = batch.column(name).to_numpy(zero_copy_only=False)  # as Feast's conversion reads it
    return [v.SerializeToString() for v in python_values_to_proto_values(column, kind)]


def _expected(batch: pa.RecordBatch) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Per row, Feast's key and hash, from Feast's own functions."""
    values = {
        name: _feast_values(batch, name, kind) for name, kind in zip(FEATURES, KINDS, strict=True)
    }
    rows = []
    for i in range(batch.num_rows):
        uid = batch.column("user_id")[i].as_py()
        key = _redis_key("churn_unit", EntityKey(join_keys=["user_id"],
                                                 entity_values=[Value(string_val=uid)]))  # fmt: skip
        stamp = Timestamp()
        stamp.FromDatetime(batch.column("event_timestamp")[i].as_py())
        fields = {b"_ts:user_activity": stamp.SerializeToString()}
        rows.append((key, fields | {_mmh3(f"user_activity:{n}"): values[n][i] for n in FEATURES}))
    return rows


def _pairs(items: list[bytes]) -> dict[bytes, bytes]:
    assert len(items) % 2 == 0
    return dict(zip(items[::2], items[1::2], strict=True))


@pytest.mark.parametrize("ttl", [None, 1_209_600])
def test_hsets_are_what_feast_writes(ttl: int | None) -> None:
    layout, batch = _layout(ttl), _batch()
    payload, replies = layout.commands(batch)
    commands = _commands(payload)
    assert replies == len(commands) == batch.num_rows * (1 if ttl is None else 2)
    hsets = [c for c in commands if c[0] == b"HSET"]
    assert [(c[1], _pairs(c[2:])) for c in hsets] == _expected(batch)
    expires = [c for c in commands if c[0] == b"EXPIRE"]
    assert [c[1:] for c in expires] == ([] if ttl is None else [[h[1], b"1209600"] for h in hsets])


def _listpack_hash(payload: bytes) -> dict[bytes, bytes]:
    """Decode a DUMP payload of a listpack hash of short strings (what the writer makes)."""
    assert payload[0] == 16  # RDB_TYPE_HASH_LISTPACK
    size, skip = (
        (payload[1], 2) if payload[1] < 64 else (((payload[1] & 0x3F) << 8) | payload[2], 3)
    )
    packed = payload[skip : skip + size]
    assert int.from_bytes(packed[:4], "little") == len(packed) and packed[-1] == 0xFF
    assert payload[skip + size : skip + size + 2] == (11).to_bytes(2, "little")
    assert int.from_bytes(payload[-8:], "little") == _crc(payload[:-8])
    items, at = [], 6
    for _ in range(int.from_bytes(packed[4:6], "little")):
        length = packed[at] & 0x3F
        assert packed[at] & 0xC0 == 0x80 and packed[at + 1 + length] == 1 + length
        items.append(packed[at + 1 : at + 1 + length])
        at += length + 2
    assert at == len(packed) - 1
    return _pairs(items)


def _crc(data: bytes) -> int:
    return int(crc64((np.frombuffer(data, np.uint8)[None, :], np.array([len(data)])))[0])


@pytest.mark.parametrize("ttl", [None, 1_209_600])
def test_restores_carry_what_feast_writes(ttl: int | None) -> None:
    batch = _batch().slice(0, 4)  # row 4 holds a value too long for the short header
    payload, replies = _layout(ttl).commands(batch, version=(11).to_bytes(2, "little"))
    commands = _commands(payload)
    assert replies == len(commands) == 4
    assert all(c[0] == b"RESTORE" and c[4] == b"REPLACE" for c in commands)
    assert [c[2] for c in commands] == [str((ttl or 0) * 1000).encode()] * 4
    assert [(c[1], _listpack_hash(c[3])) for c in commands] == _expected(batch)


def test_a_batch_with_a_long_value_is_sent_as_hsets() -> None:
    payload, _ = _layout(None).commands(_batch(), version=b"\x0b\x00")
    assert {c[0] for c in _commands(payload)} == {b"HSET"}


def test_crc64_is_redis_jones_crc() -> None:
    assert _crc(b"123456789") == 0xE9C6D914C4B8D9CA  # redis/src/crc64.c's test vector


@pytest.mark.parametrize("length", [0, 63, 64, 16383, 16384, 2**31])
def test_rdb_length_prefix(length: int) -> None:
    data, count = rdb_length(np.array([length]))
    prefix = bytes(data[0, : count[0]])
    if length < 64:
        assert prefix == bytes([length])
    elif length < 16384:
        assert prefix == bytes([0x40 | length >> 8, length & 0xFF])
    else:
        assert prefix == b"\x80" + length.to_bytes(4, "big")


def test_nulls_and_nans_are_empty_values_as_feast_makes_them() -> None:
    batch = _batch()
    assert _feast_values(batch, "minutes_7d", ValueType.DOUBLE)[2:4] == [b"", b""]
    fields = _commands(_layout(None).commands(batch)[0])[3][2:]
    by_field = dict(zip(fields[::2], fields[1::2], strict=True))
    assert by_field[_mmh3("user_activity:count_7d")] == b""
    assert by_field[_mmh3("user_activity:plan")] == Value(string_val="prémium").SerializeToString()


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**35, 2**63 - 1, -1, -(2**63)])
def test_varint_matches_protobuf(value: int) -> None:
    data, count = varint(np.array([value], np.int64).view(np.uint64))
    assert bytes(data[0, : count[0]]) == Value(int64_val=value).SerializeToString()[1:]


def test_decimal_digits() -> None:
    values = np.array([0, 7, 10, 99, 1000, 123456789012])
    data, count = decimal(values)
    assert [bytes(row[:n]).decode() for row, n in zip(data, count, strict=True)] == [
        str(v) for v in values
    ]
