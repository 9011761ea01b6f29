"""Ingest from a landing folder: every new ``users*`` and ``events*`` export, exactly once.

Exports are dropped into one folder (``CHURN_SOURCE=dir:///path``). Each run takes the
top-level files named ``users*`` or ``events*`` ending in ``.csv``, ``.parquet`` or
``.pq``; hidden files (``.*``), partial uploads (``*.tmp``, ``*.part``: any other ending),
empty files and subfolders are left alone. Uploaders should write under such a name and
rename when done: a file written in place is skipped while it changes during its read,
but one paused mid-upload cannot be told from a finished one.

"Exactly once" is the manifest's: ``raw/landing_manifest.jsonl`` (an append-only history)
holds a line per file taken, with its name, size and sha256, when it was taken and what
became of it. A file whose name, size and hash are there is skipped; a known name with
other content is a re-export and is taken again (the raw store keeps each ``event_id``
once, so rows it shares with the first export are not duplicated).

Taken files stay in the folder: the manifest says they are done. A file that fails the
contract is moved to ``quarantine/`` beside a ``<name>.report.json`` as soon as it is
found, and recorded, so the same content is not retried; the other files go on.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from core import contract
from core.atomic import write_json
from core.history import append_record, read_records
from core.settings import Settings
from ingestion import raw_store
from ingestion.ingest import IngestError, read_events, read_users

log = logging.getLogger(__name__)

MANIFEST_FILE = "landing_manifest.jsonl"
QUARANTINE_DIR = "quarantine"
KINDS = ("users", "events")  # taken in this order: a new user's events follow the user
SUFFIXES = (".csv", ".parquet", ".pq")
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class LandingFile:
    """A file found in the landing folder, with what identifies its content."""

    path: Path
    kind: str
    size: int
    mtime_ns: int
    sha256: str

    def key(self) -> tuple[str, int, str]:
        return self.path.name, self.size, self.sha256

    def record(self, taken_at: datetime, **outcome: object) -> dict:
        """Its manifest line: the file, when it was taken, and ``outcome``."""
        return {
            "name": self.path.name,
            "kind": self.kind,
            "size": self.size,
            "sha256": self.sha256,
            "taken_at": taken_at.isoformat(),
            **outcome,
        }


class StillWriting(IngestError):
    """The file changed or went away after it was hashed: left for the next run."""


def manifest_path(settings: Settings) -> Path:
    return settings.raw_dir / MANIFEST_FILE


def file_kind(path: Path) -> str | None:
    """``users`` or ``events`` for a file this source takes, None for one it leaves alone."""
    name = path.name.lower()
    if name.startswith(".") or not name.endswith(SUFFIXES):
        return None
    return next((kind for kind in KINDS if name.startswith(kind)), None)


def sha256_of(path: Path) -> str:
    """The file's sha256, read in blocks (an export may be larger than memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def pending_files(folder: Path, manifest: list[dict]) -> list[LandingFile]:
    """The folder's files not in ``manifest``: users files, then events files, each by name."""
    known = {(r.get("name"), r.get("size"), r.get("sha256")) for r in manifest}
    found = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        kind = file_kind(path)
        if kind is None or not path.is_file():
            continue
        try:
            stat = path.stat()  # before hashing: a write during the hash shows as a change
            digest = sha256_of(path) if stat.st_size else ""
        except FileNotFoundError:  # moved away since the listing
            continue
        if stat.st_size == 0:
            log.info("%s: empty, left for a later run (an upload not begun?)", path)
            continue
        candidate = LandingFile(path, kind, stat.st_size, stat.st_mtime_ns, digest)
        if candidate.key() not in known:
            found.append(candidate)
    return sorted(found, key=lambda f: (KINDS.index(f.kind), f.path.name))


def read_contract_table(file: LandingFile) -> pa.Table:
    """The file's rows as a contract table; IngestError (naming file and column) if it fails
    the contract, StillWriting if it changed or went away since it was hashed."""
    try:
        if file.kind == "users":
            table = contract.to_contract_table(read_users(file.path), contract.USER_COLUMNS)
        else:
            table = contract.to_contract_table(read_events(file.path), contract.EVENT_COLUMNS)
    except IngestError as exc:
        if _changed(file):  # a half-written file is not a bad one
            raise StillWriting(f"{file.path}: changed while it was read") from exc
        raise
    if _changed(file):
        raise StillWriting(f"{file.path}: changed while it was read")
    return table


def _changed(file: LandingFile) -> bool:
    try:
        stat = file.path.stat()
    except FileNotFoundError:
        return True
    return (stat.st_size, stat.st_mtime_ns) != (file.size, file.mtime_ns)


def quarantine(file: LandingFile, error: IngestError, now: datetime) -> Path:
    """Move ``file`` into the folder's ``quarantine/`` (a free name) beside its report."""
    target_dir = file.path.parent / QUARANTINE_DIR
    target_dir.mkdir(exist_ok=True)
    target = _free_name(target_dir, file.path.name)
    report = {
        "file": file.path.name,
        "kind": file.kind,
        "size": file.size,
        "sha256": file.sha256,
        "error": str(error),
        "quarantined_at": now.isoformat(),
    }
    # The report first: a crash between the two leaves a report, never an unexplained file.
    write_json(report, target.with_name(f"{target.name}.report.json"))
    os.replace(file.path, target)
    return target


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/<stem>.<n><suffix>`` when a file (or its report) is there."""
    stem, suffix = os.path.splitext(name)
    candidate, n = folder / name, 0
    while candidate.exists() or candidate.with_name(f"{candidate.name}.report.json").exists():
        n += 1
        candidate = folder / f"{stem}.{n}{suffix}"
    return candidate


def ingest_landing(
    settings: Settings,
    folder: Path,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> raw_store.Landed:
    """Take the folder's new files into the raw tables; what they added.

    Memory is one file's (each is read whole) plus the run's users. Events of every file
    are staged, then merged once, then the users upserted; only then are the taken files
    appended to the manifest, so a run that fails anywhere takes them again next time
    (harmless: the raw store keeps each ``event_id`` once). Quarantines are recorded as
    they happen (they never touched raw). ``progress(done, total)`` follows the files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"landing folder {folder} does not exist or is not a folder")
    now = now or datetime.now(UTC)
    manifest = manifest_path(settings)
    files = pending_files(folder, read_records(manifest))
    if not files:
        log.info("landing folder %s: no new files, nothing to ingest", folder)
        return raw_store.Landed()
    taken: list[dict] = []
    users: list[pa.Table] = []
    with raw_store.staging(settings) as staged:
        for done, file in enumerate(files, start=1):
            try:
                table = read_contract_table(file)
            except StillWriting as exc:
                log.warning("%s; left for the next run", exc)
            except IngestError as exc:
                append_record(manifest, _quarantined(file, exc, folder, now))
            else:
                if file.kind == "users":
                    users.append(table)
                else:
                    staged.add(table)
                taken.append(file.record(now, outcome="ingested", rows=table.num_rows))
            if progress:
                progress(done, len(files))
        landed = raw_store.merge(settings, staged)
    if users:
        landed.add(raw_store.upsert_users(settings, pa.concat_tables(users)))
    for record in taken:
        append_record(manifest, record)
    log.info(
        "landing folder %s: %d of %d new file(s) ingested; %s",
        folder, len(taken), len(files), landed.to_dict(),
    )  # fmt: skip
    return landed


def _quarantined(file: LandingFile, error: IngestError, folder: Path, now: datetime) -> dict:
    """Quarantine ``file``; its manifest line."""
    moved = quarantine(file, error, now)
    log.warning("%s quarantined as %s: %s", file.path.name, moved, error)
    return file.record(
        now, outcome="quarantined", reason=str(error), moved_to=str(moved.relative_to(folder))
    )
