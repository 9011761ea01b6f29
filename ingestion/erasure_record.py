"""The erasure record: which learners were forgotten, kept without their ids, so that no
later ingest brings them back.

Layout (under the data dir, so it moves and is backed up with the data)::

    erasure/secret.key       32 random bytes, mode 0600, made on first use
    erasure/forgotten.jsonl  one line per `churn forget` run (``core.history``)

A line holds, for each learner forgotten, a BLAKE2b hash of the id keyed with the
installation's secret, never the id; then when, and how many rows were removed where.
Keyed, so that the record alone cannot be checked against a list of guessed ids; a
secret per installation, so that two installations' records cannot be joined. Losing
the secret loses the record's use: ``Forgotten.load`` then stops every ingest rather
than let a forgotten learner back in.

``Forgotten`` is the filter the raw store applies to everything a source hands it
(``ingestion.raw_store``): it hashes only the distinct ids of a batch, and costs nothing
on an installation that never forgot anyone (no record, no hashing).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from core.atomic import fsync_path
from core.history import append_record, read_records
from core.settings import Settings

ERASURE_DIR = "erasure"
SECRET_FILE = "secret.key"
RECORD_FILE = "forgotten.jsonl"
SECRET_BYTES = 32
HASH_BYTES = 32


class ErasureRecordError(ValueError):
    """The erasure record cannot be honoured (its secret is missing or damaged)."""


def erasure_dir(settings: Settings) -> Path:
    return settings.data_dir / ERASURE_DIR


def record_path(settings: Settings) -> Path:
    return erasure_dir(settings) / RECORD_FILE


def secret_path(settings: Settings) -> Path:
    return erasure_dir(settings) / SECRET_FILE


def id_hash(user_id: str, key: bytes) -> str:
    """The record's name for ``user_id``: BLAKE2b-256 of its UTF-8 bytes keyed with ``key``,
    in hex."""
    return hashlib.blake2b(
        str(user_id).encode("utf-8"), key=key, digest_size=HASH_BYTES
    ).hexdigest()


def read_secret(settings: Settings) -> bytes | None:
    """The installation's secret, or None before the first erasure."""
    path = secret_path(settings)
    if not path.is_file():
        return None
    key = path.read_bytes()
    if len(key) != SECRET_BYTES:
        raise ErasureRecordError(f"{path} is damaged ({len(key)} bytes, not {SECRET_BYTES})")
    return key


def ensure_secret(settings: Settings) -> bytes:
    """The installation's secret, made on first use: random, readable by its owner only.

    Written aside and linked into place, so two first uses agree on one secret and a
    reader never sees half of one."""
    if (key := read_secret(settings)) is not None:
        return key
    path = secret_path(settings)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{SECRET_FILE}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(SECRET_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another first use won: theirs it is
            os.link(tmp, path)
        fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    if (key := read_secret(settings)) is None:
        raise ErasureRecordError(f"{path} could not be made")
    return key


def record_erasure(
    settings: Settings,
    user_ids: Iterable[str],
    when: datetime,
    removed: dict[str, dict[str, int]],
    **details: object,
) -> dict:
    """Append one forget run to the record: the ids' keyed hashes, ``when``, and
    ``removed`` ({where: {"files": n, "rows": n}}); ``details`` must not hold an id.
    Returns the line written."""
    key = ensure_secret(settings)
    line = {
        "forgotten_at": when.isoformat(),
        "users": sorted({id_hash(u, key) for u in user_ids}),
        "removed": removed,
        **details,
    }
    append_record(record_path(settings), line)
    return line


@dataclass(frozen=True)
class Forgotten:
    """The forgotten learners' hashes and the key that made them: tells a batch's
    forgotten ids from the others without the ids in clear."""

    key: bytes
    hashes: frozenset[str]

    @classmethod
    def load(cls, settings: Settings) -> Forgotten | None:
        """The record's learners, or None when nobody was ever forgotten. A record without
        its secret raises ErasureRecordError: ingesting then could bring them back."""
        lines = read_records(record_path(settings))
        if not lines:
            return None
        key = read_secret(settings)
        if key is None:
            raise ErasureRecordError(
                f"{record_path(settings)} lists forgotten learners but {secret_path(settings)} "
                "is missing: restore it from a backup of the data dir before ingesting"
            )
        return cls(key, frozenset(h for line in lines for h in line.get("users", [])))

    def among(self, ids: pa.Array | pa.ChunkedArray) -> list[str]:
        """The distinct ids of ``ids`` that were forgotten (each distinct id hashed once)."""
        distinct = pc.unique(ids).drop_null().to_pylist()
        return [u for u in distinct if id_hash(u, self.key) in self.hashes]

    def drop(self, table: pa.Table, column: str = "user_id") -> tuple[pa.Table, int]:
        """``table`` without the rows of forgotten learners, and how many rows that was."""
        found = self.among(table[column])
        if not found:
            return table, 0
        hit = pc.is_in(table[column], value_set=pa.array(found, table.schema.field(column).type))
        kept = table.filter(pc.invert(hit))
        return kept, table.num_rows - kept.num_rows
