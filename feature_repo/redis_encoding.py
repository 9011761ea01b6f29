"""Byte encodings for Redis, a whole batch of rows at a time, with numpy.

The online writer (``feature_repo.online_writer``) builds every row of a record batch the
same way, so it builds them together: a row is a sequence of parts, each either bytes all
rows share or a ``Piece``, a matrix whose row i holds that row's bytes in its first
``lengths[i]`` columns. ``join`` lays the parts side by side and keeps, with one boolean
mask, each row's bytes in order: one buffer for the batch, no Python object per value.

The encodings: the Redis protocol (RESP bulk strings), protobuf varints, ASCII decimals,
and for ``RESTORE``, Redis' listpack, the RDB length prefix and Redis' CRC-64 (Jones).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

Piece = tuple[np.ndarray, np.ndarray]  # (bytes, lengths): row i is bytes[i, :lengths[i]]
Part = Piece | bytes

CRLF = b"\r\n"
LISTPACK_END = b"\xff"
_CRC64_POLY = 0x95AC9329AC4BC9B5  # Jones' polynomial 0xad93d23594c935a9, bit-reflected


def join(parts: list[Part], n: int) -> bytes:
    """Row by row, each part's bytes in order: one buffer for ``n`` rows."""
    data, keep = _laid_out(parts, n)
    return np.concatenate(data, axis=1)[np.concatenate(keep, axis=1)].tobytes()


def padded(parts: list[Part], n: int) -> Piece:
    """The rows of ``parts`` joined, as a piece: one matrix row per row."""
    lengths = row_lengths(parts, n)
    flat = np.frombuffer(join(parts, n), np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    width = int(lengths.max(initial=0))
    index = np.minimum(starts[:, None] + np.arange(width), max(len(flat) - 1, 0))
    return (flat[index] if len(flat) else np.zeros((n, width), np.uint8)), lengths


def row_lengths(parts: Sequence[Part], n: int) -> np.ndarray:
    """How many bytes ``parts`` make in each row."""
    total = np.zeros(n, np.int64)
    for part in parts:
        total += len(part) if isinstance(part, bytes) else part[1]
    return total


def _laid_out(parts: list[Part], n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    merged: list[Part] = []
    for part in parts:  # neighbouring constants as one: fewer, wider arrays
        if isinstance(part, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += part
        else:
            merged.append(part)
    data, keep = [], []
    for part in merged:
        if isinstance(part, bytes):
            data.append(np.broadcast_to(np.frombuffer(part, np.uint8), (n, len(part))))
            keep.append(np.broadcast_to(True, (n, len(part))))
        else:
            data.append(part[0])
            keep.append(np.arange(part[0].shape[1]) < part[1][:, None])
    return data, keep


def bulk(data: bytes) -> bytes:
    """A Redis bulk string."""
    return b"$%d\r\n%s\r\n" % (len(data), data)


def bulk_parts(payload: Sequence[Part], n: int) -> list[Part]:
    """Per row, a Redis bulk string of the row's bytes of ``payload``."""
    return [b"$", decimal(row_lengths(payload, n)), CRLF, *payload, CRLF]


def masked(piece: Piece, keep: np.ndarray) -> Piece:
    """``piece`` with nothing in the rows ``keep`` leaves out."""
    return piece[0], np.where(keep, piece[1], 0)


def byte(value: int, rows: np.ndarray) -> Piece:
    """One byte in the rows ``rows`` (a boolean mask) holds, nothing in the others."""
    return np.full((len(rows), 1), value, np.uint8), rows.astype(np.int64)


def varint(values: np.ndarray) -> Piece:
    """Protobuf base-128 varints of unsigned 64-bit values (negative int64s as two's
    complement: ten bytes, as protobuf encodes them)."""
    values = values.astype(np.uint64)
    count = np.ones(len(values), np.int64)
    top = int(values.max(initial=0))
    for k in range(1, 10):
        if top < 1 << (7 * k):
            break
        count += values >= np.uint64(1 << (7 * k))
    width = int(count.max(initial=1))
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    data = ((values[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    data |= np.where(np.arange(width) < (count - 1)[:, None], 0x80, 0).astype(np.uint8)
    return data, count


def decimal(values: np.ndarray) -> Piece:
    """Non-negative integers as ASCII decimal digits."""
    values = values.astype(np.int64)
    count = np.ones(len(values), np.int64)
    top = int(values.max(initial=0))
    for k in range(1, 19):
        if top < 10**k:
            break
        count += values >= 10**k
    width = int(count.max(initial=1))
    exponents = np.clip(count[:, None] - 1 - np.arange(width), 0, None)
    digits = (values[:, None] // 10**exponents) % 10 + ord("0")
    return digits.astype(np.uint8), count


def little_endian(values: np.ndarray, size: int) -> Piece:
    """Unsigned integers as ``size`` little-endian bytes."""
    dtype = {2: "<u2", 4: "<u4", 8: "<u8"}[size]
    data = values.astype(dtype).view(np.uint8).reshape(len(values), size)
    return data, np.full(len(values), size)


def strings(column: pa.Array) -> Piece:
    """The UTF-8 bytes of each string (none for a null)."""
    column = column.cast(pa.large_string())
    n = len(column)
    offsets = np.frombuffer(column.buffers()[1], np.int64)[column.offset : column.offset + n + 1]
    buffer = column.buffers()[2]
    data = np.frombuffer(buffer, np.uint8) if buffer is not None else np.zeros(0, np.uint8)
    lengths = np.where(np.asarray(column.is_valid()), np.diff(offsets), 0)
    width = int(lengths.max(initial=0))
    if width == 0 or len(data) == 0:
        return np.zeros((n, 0), np.uint8), lengths
    index = np.minimum(offsets[:-1, None] + np.arange(width), len(data) - 1)
    return data[index], lengths


# Listpack (Redis' compact encoding of small hashes) and the DUMP/RESTORE payload.
SHORT_STRING = 63  # listpack strings up to this long have a one-byte header


def listpack_entry(payload: Sequence[Part], n: int) -> list[Part]:
    """A listpack string entry per row: its header, the bytes, the back-length. Rows must
    be at most ``SHORT_STRING`` long (the writer checks): one header byte, and an entry
    of at most 64 bytes has a one-byte back-length."""
    length = row_lengths(payload, n)
    header = (np.asarray(0x80 | length, np.uint8)[:, None], np.ones(n, np.int64))
    back = (np.asarray(1 + length, np.uint8)[:, None], np.ones(n, np.int64))
    return [header, *payload, back]


def listpack_constant_entry(data: bytes) -> bytes:
    """A listpack string entry every row shares (at most ``SHORT_STRING`` bytes)."""
    if len(data) > SHORT_STRING:
        raise ValueError(f"a listpack constant of {len(data)} bytes needs a longer header")
    return bytes([0x80 | len(data)]) + data + bytes([1 + len(data)])


def listpack(entries: list[Part], count: int, n: int) -> list[Part]:
    """A listpack per row: total bytes (uint32), element count (uint16), entries, end."""
    total = 4 + 2 + row_lengths(entries, n) + 1
    return [little_endian(total, 4), count.to_bytes(2, "little"), *entries, LISTPACK_END]


def rdb_length(values: np.ndarray) -> Piece:
    """RDB's length prefix: 6 bits, 14 bits (big-endian) or 0x80 and 32 bits."""
    n = len(values)
    data = np.zeros((n, 5), np.uint8)
    short, medium = values < 64, (values >= 64) & (values < 16384)
    data[:, 0] = np.where(short, values, np.where(medium, 0x40 | (values >> 8), 0x80))
    data[:, 1] = np.where(medium, values & 0xFF, (values >> 24) & 0xFF)
    for i, shift in enumerate((16, 8, 0), start=2):
        data[:, i] = (values >> shift) & 0xFF
    return data, np.where(short, 1, np.where(medium, 2, 5))


def _crc64_table() -> np.ndarray:
    table = np.zeros(256, np.uint64)
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ (_CRC64_POLY if crc & 1 else 0)
        table[i] = crc
    return table


_CRC64_TABLE = _crc64_table()


def crc64(piece: Piece) -> np.ndarray:
    """Redis' CRC-64 (Jones, reflected, initial 0) of each row: what DUMP appends."""
    data, lengths = piece
    crc = np.zeros(len(lengths), np.uint64)
    eight = np.uint64(8)
    for j in range(data.shape[1]):
        step = _CRC64_TABLE[(crc ^ data[:, j]) & np.uint64(0xFF)] ^ (crc >> eight)
        crc = np.where(j < lengths, step, crc)
    return crc
