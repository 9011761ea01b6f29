"""Scrub ids out of stored files: what names one of them is removed, the file rewritten in
place atomically (``core.atomic``, ``core.history``), so a reader sees the old file or the
new one. A file that names none of them is left untouched.

What names an id, per format (ids are compared whole: ``u1`` does not name ``u10``):

- Parquet: a row whose id column holds one. Checked cheaply first: the row groups'
  min/max statistics of the column, then the column alone; only then is the file read.
- CSV: a row with a field equal to one (the header stays).
- JSON: a string equal to one is removed with what holds it: a list's element, a dict's
  entry; so is a dict entry whose key is one, and a list's element that is a dict naming
  one directly (an example row).
- JSON lines (the histories): a line naming one directly is removed, the others scrubbed
  as JSON.

Any other file is not read here: ``names_any`` tells whether its bytes hold an id.
"""

from __future__ import annotations

import csv
import io
import json
import mmap
import re
from collections.abc import Iterable
from pathlib import Path
from typing import overload

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.atomic import write_parquet, write_text
from core.history import rewrite_records

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
JSON_SUFFIXES = (".json",)
HISTORY_SUFFIXES = (".jsonl",)
SCRUBBED_SUFFIXES = PARQUET_SUFFIXES + CSV_SUFFIXES + JSON_SUFFIXES + HISTORY_SUFFIXES


def scrub_file(path: Path, ids: frozenset[str], column: str) -> int:
    """Remove what names ``ids`` from ``path`` (a format of ``SCRUBBED_SUFFIXES``; Parquet by
    its ``column``); how many rows or values that was."""
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return scrub_parquet(path, ids, column)
    if not _mentions(path.read_bytes(), ids):  # the cheap look before parsing
        return 0
    if suffix in CSV_SUFFIXES:
        return scrub_csv(path, ids)
    if suffix in JSON_SUFFIXES:
        return scrub_json(path, ids)
    if suffix in HISTORY_SUFFIXES:
        return scrub_history(path, ids)
    raise ValueError(f"{path}: cannot scrub a {suffix or 'suffix-less'} file")


def _string_type(field: pa.Field) -> pa.DataType | None:
    """The string type of an id column (a dictionary's values), None for any other."""
    kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
    return kind if pa.types.is_string(kind) or pa.types.is_large_string(kind) else None


def count_rows(path: Path, ids: frozenset[str], column: str) -> int:
    """Rows of the Parquet file ``path`` whose ``column`` holds one of ``ids``: 0 from the
    footer alone when its statistics rule them out, else from that column alone."""
    with pq.ParquetFile(path) as file:
        field = _field(file, column)
        if field is None or _string_type(field) is None or not _may_hold(file, column, ids):
            return 0
        values = file.read(columns=[column])[column]
    hit = pc.is_in(values, value_set=pa.array(sorted(ids), _string_type(field)))
    return int(pc.sum(hit).as_py() or 0)


def scrub_parquet(path: Path, ids: frozenset[str], column: str) -> int:
    """Remove the rows whose ``column`` holds one of ``ids``; the file keeps its schema and,
    when it had several, its row groups' size."""
    found = count_rows(path, ids, column)
    if not found:
        return 0
    with pq.ParquetFile(path) as file:
        table = file.read()
        groups = file.metadata.num_row_groups
        group_rows = file.metadata.row_group(0).num_rows if groups > 1 else None
    kind = _string_type(table.schema.field(column))
    kept = table.filter(pc.invert(pc.is_in(table[column], value_set=pa.array(sorted(ids), kind))))
    write_parquet(kept, path, row_group_size=group_rows)
    return found


def _field(file: pq.ParquetFile, column: str) -> pa.Field | None:
    schema = file.schema_arrow
    return schema.field(column) if column in schema.names else None


def _may_hold(file: pq.ParquetFile, column: str, ids: frozenset[str]) -> bool:
    """Whether some row group's min/max of ``column`` leaves room for one of ``ids``
    (a row group without statistics may hold anything)."""
    meta = file.metadata
    leaf = next((i for i in range(meta.num_columns) if meta.schema.column(i).path == column), None)
    if leaf is None:
        return True
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(leaf).statistics
        if stats is None or not stats.has_min_max:
            return True
        low, high = stats.min, stats.max
        if isinstance(low, bytes) or isinstance(high, bytes):
            return True
        if any(low <= i <= high for i in ids):
            return True
    return False


def scrub_csv(path: Path, ids: frozenset[str]) -> int:
    """Remove the rows with a field equal to one of ``ids``; the header stays."""
    text = path.read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    kept = rows[:1] + [row for row in rows[1:] if not ids.intersection(row)]
    removed = len(rows) - len(kept)
    if removed:
        out = io.StringIO(newline="")
        csv.writer(out, lineterminator="\n").writerows(kept)
        write_text(out.getvalue(), path)
    return removed


def scrub_json(path: Path, ids: frozenset[str]) -> int:
    """Remove what names one of ``ids`` from a JSON document (written back indented)."""
    value, removed = scrub_value(json.loads(path.read_text(encoding="utf-8")), ids)
    if removed:
        write_text(json.dumps(value, indent=2) + "\n", path)
    return removed


def scrub_history(path: Path, ids: frozenset[str]) -> int:
    """Remove the lines of a history that name one of ``ids``, and scrub the others."""
    removed = 0

    def change(records: list[dict]) -> list[dict]:
        nonlocal removed
        kept = []
        for record in records:
            if names_directly(record, ids):
                removed += 1
                continue
            scrubbed, n = scrub_value(record, ids)
            removed += n
            kept.append(scrubbed)
        return kept

    rewrite_records(path, change)
    return removed


@overload
def scrub_value(value: dict, ids: frozenset[str]) -> tuple[dict, int]: ...
@overload
def scrub_value(value: object, ids: frozenset[str]) -> tuple[object, int]: ...
def scrub_value(value: object, ids: frozenset[str]) -> tuple[object, int]:
    """Pure: ``value`` (parsed JSON) without what names one of ``ids``, and how many
    elements or entries went. ``value`` itself is not changed."""
    if isinstance(value, dict):
        out, removed = {}, 0
        for key, item in value.items():
            if key in ids or _is_id(item, ids):
                removed += 1
                continue
            out[key], n = scrub_value(item, ids)
            removed += n
        return out, removed
    if isinstance(value, list):
        kept, removed = [], 0
        for item in value:
            if _is_id(item, ids) or (isinstance(item, dict) and names_directly(item, ids)):
                removed += 1
                continue
            scrubbed, n = scrub_value(item, ids)
            kept.append(scrubbed)
            removed += n
        return kept, removed
    return value, 0


def names_directly(record: dict, ids: frozenset[str]) -> bool:
    """Whether one of the dict's own keys or values (not nested ones) is one of ``ids``."""
    return any(key in ids or _is_id(item, ids) for key, item in record.items())


def _is_id(value: object, ids: frozenset[str]) -> bool:
    return isinstance(value, str) and value in ids


def _pattern(ids: Iterable[str]) -> re.Pattern[bytes]:
    """Any of ``ids`` as a whole word of bytes (not inside a longer id)."""
    alternatives = b"|".join(
        re.escape(i.encode("utf-8")) for i in sorted(ids, key=len, reverse=True)
    )
    return re.compile(rb"(?<![A-Za-z0-9_\-])(?:" + alternatives + rb")(?![A-Za-z0-9_\-])")


def _mentions(data: bytes | mmap.mmap, ids: frozenset[str]) -> bool:
    return bool(ids) and _pattern(ids).search(data) is not None


def names_any(path: Path, ids: frozenset[str]) -> bool:
    """Whether the bytes of ``path`` (any format, mapped, not read into memory) hold one of
    ``ids`` as a whole word."""
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            return False
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _mentions(data, ids)
