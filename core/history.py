"""Append-only histories: one JSON object a line in a ``.jsonl`` file.

Every history the product keeps goes through here (the registry's index and promotions,
the promotion decisions, the drift, outcomes and retraining histories), so all have the
same guarantees:

- ``append_record`` writes the whole line with one ``write`` under an exclusive ``flock``,
  then ``fsync``s the file, and its directory when the append created it: once it returns,
  the record survives a crash, and concurrent writers never cut each other's lines.
  The lock is a file beside the history (``.<name>.lock``), not the history itself: it is
  opened for writing, as ``flock`` on NFS requires, and it outlives ``start_from``'s rename.
- A crash mid-append leaves text after the last newline: a record never acknowledged.
  ``read_records`` skips it with a warning, so every later read works, and the next
  ``append_record`` cuts it off first. A record is history once its newline is on disk.
- A complete line that is not a JSON object is damage, not a crash: ``HistoryError``
  names the file and the line, and nothing is written over it.
- Nothing rewrites a history but an erasure (``rewrite_records``), under the same lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from core.atomic import fsync_path, write_text

log = logging.getLogger(__name__)


class HistoryError(ValueError):
    """A history file holds a complete line that is not a JSON object; the message names it."""


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` (JSON-ready) to the history ``path`` as one line, durably."""
    data = (json.dumps(record) + "\n").encode("utf-8")
    with _locked(path):
        created = not path.exists()
        with path.open("ab+", buffering=0) as handle:
            _cut_incomplete_tail(handle)
            if handle.write(data) != len(data):
                raise OSError(f"short write to {path}")
            os.fsync(handle.fileno())
        if created:
            fsync_path(path.parent)


def read_records(path: Path) -> list[dict]:
    """Every record of the history ``path``, oldest first; ``[]`` when there is none.

    Text after the last newline (an interrupted append) is skipped with a warning;
    blank lines are skipped; any other line that is not a JSON object raises HistoryError.
    """
    if not path.exists():
        return []
    complete, _, tail = path.read_bytes().rpartition(b"\n")
    if tail.strip():
        log.warning(
            "%s: ignoring %d bytes after the last newline, an append cut short (%r)",
            path, len(tail), tail[:60],
        )  # fmt: skip
    records = []
    for number, line in enumerate(complete.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise HistoryError(f"corrupt history {path}, line {number}: {exc}") from exc
        if not isinstance(record, dict):
            raise HistoryError(f"corrupt history {path}, line {number}: not a JSON object")
        records.append(record)
    return records


def start_from(path: Path, records: Iterable[Mapping[str, Any]]) -> bool:
    """Create the history ``path`` holding ``records``, unless it exists; True when created.

    The one way to carry a history over from an older format. The file is written aside
    and renamed in, so it is whole or absent: an interrupted migration is redone, never
    left half done (which an append of one record at a time could not promise).
    """
    with _locked(path):
        if path.exists():
            return False
        write_text("".join(json.dumps(r) + "\n" for r in records), path)
        return True


def rewrite_records(path: Path, change: Callable[[list[dict]], list[dict]]) -> None:
    """Replace the history ``path``'s records by ``change(records)``, under its lock, in
    one atomic write. The one exception to append-only: an erasure (``churn forget``)
    removing what names a forgotten learner. Written only when ``change`` changed
    something; a missing history stays missing."""
    with _locked(path):
        if not path.exists():
            return
        records = read_records(path)
        changed = change(records)
        if changed != records:
            write_text("".join(json.dumps(r) + "\n" for r in changed), path)


def _cut_incomplete_tail(handle: BinaryIO) -> None:
    """Drop text after the last newline (an interrupted append) so the next line starts clean."""
    size = handle.seek(0, os.SEEK_END)
    if not size:
        return
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return
    handle.seek(0)
    handle.truncate(handle.read().rfind(b"\n") + 1)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the history's exclusive lock (released when the lock file is closed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(f".{path.name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
