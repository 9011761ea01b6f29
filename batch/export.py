"""The retention team's copy of each night's list, in a directory they mount (``export_dir``).

Layout, each night T (a UTC midnight; files are named by T's date, as the batch's
``as_of=YYYY-MM-DD`` directory is: the list of T = 2026-12-05 00:00 UTC, scored on the
features of 2026-12-04, is ``high_risk_2026-12-05.csv``)::

    export_dir/
        high_risk_YYYY-MM-DD.csv    the list of T, the bytes of the batch's high_risk.csv
        high_risk_latest.csv        the same bytes as the newest dated list
        latest.json                 MANIFEST_FIELDS of high_risk_latest.csv, written last

Every file is written to a temporary sibling and renamed in (``core.atomic``), the manifest
last: a consumer that watches ``latest.json`` and reads the ``file`` it names (or the latest
list, checked against its ``sha256``) never reads half a list. A failure part way leaves the
previous manifest, and the dated list it names, as they were (and the previous latest list,
unless only the manifest was left to write). A re-run of a date replaces its files. A run of a date older than the newest dated list (a
backfill) writes its dated file only: ``latest`` stays the newest night. Dated lists older
than ``keep_nights`` before the newest are deleted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TypedDict

from core.atomic import write_json, write_text

log = logging.getLogger(__name__)

DATED_PREFIX = "high_risk_"
LATEST_FILE = "high_risk_latest.csv"
MANIFEST_FILE = "latest.json"
MANIFEST_FIELDS = ("as_of", "date", "file", "latest", "rows", "columns", "sha256", "model_version")
_DATED_NAME = re.compile(rf"^{DATED_PREFIX}(\d{{4}}-\d{{2}}-\d{{2}})\.csv$")


class ExportError(ValueError):
    """The list could not be delivered: one line naming the export dir and the cause. A
    ValueError, so the CLI shows it as one line and exits non-zero, as for a bad setting."""


@dataclass(frozen=True)
class Export:
    """What one export wrote: the dated list (None when the night is older than the nights
    kept), its rows, whether it is now the latest, and the dated lists deleted as too old."""

    file: Path | None
    rows: int
    latest: bool
    pruned: list[str] = field(default_factory=list)


def dated_path(export_dir: Path, day: date) -> Path:
    """``export_dir/high_risk_YYYY-MM-DD.csv``: the list of T, named by T's date."""
    return export_dir / f"{DATED_PREFIX}{day:%Y-%m-%d}.csv"


def dated_lists(export_dir: Path) -> dict[date, Path]:
    """The dated lists in ``export_dir`` by T's date; other names (the latest list,
    temporaries, a person's copies) are not dated lists."""
    found = {}
    for path in export_dir.iterdir() if export_dir.is_dir() else []:
        match = _DATED_NAME.match(path.name)
        if match and path.is_file():
            try:
                found[date.fromisoformat(match.group(1))] = path
            except ValueError:  # high_risk_2026-13-45.csv
                continue
    return found


def manifest(as_of: datetime, text: str, model_version: str) -> dict[str, object]:
    """The ``latest.json`` payload (``MANIFEST_FIELDS``) of the list ``text`` of T = ``as_of``."""
    return {
        "as_of": as_of.isoformat(),
        "date": f"{as_of:%Y-%m-%d}",
        "file": dated_path(Path(), as_of.date()).name,
        "latest": LATEST_FILE,
        **described(text),
        "model_version": model_version,
    }


class ListDescription(TypedDict):
    """What ``described`` says of a list's CSV text."""

    rows: int
    columns: list[str]
    sha256: str


def described(text: str) -> ListDescription:
    """``rows`` (without the header), ``columns`` and ``sha256`` of a list's CSV text."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    return {
        "rows": max(len(rows) - 1, 0),
        "columns": rows[0] if rows else [],
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }


def export_list(
    high_risk_csv: Path, export_dir: Path, as_of: datetime, model_version: str, keep_nights: int
) -> Export:
    """Deliver the batch's ``high_risk_csv`` of T = ``as_of`` into ``export_dir`` (see the
    module docstring); the directory is created when its parent exists. Raises ExportError
    naming the directory and the cause when it cannot be written."""
    _ready(export_dir)
    text = high_risk_csv.read_text(encoding="utf-8")
    day = as_of.date()
    try:
        newest = max([*dated_lists(export_dir), day])
        if day <= newest - timedelta(days=keep_nights):
            log.warning(
                "not exported: the list of %s is older than the %d nights %s keeps",
                day, keep_nights, export_dir,
            )  # fmt: skip
            return Export(None, 0, latest=False)
        target = write_text(text, dated_path(export_dir, day))
        if day == newest:
            write_text(text, export_dir / LATEST_FILE)
            write_json(manifest(as_of, text, model_version), export_dir / MANIFEST_FILE)
    except OSError as exc:
        raise ExportError(
            f"cannot export the high-risk list to {export_dir}: {_cause(exc)}"
        ) from exc
    rows = described(text)["rows"]
    return Export(target, rows, latest=day == newest, pruned=prune(export_dir, newest, keep_nights))


def prune(export_dir: Path, newest: date, keep_nights: int) -> list[str]:
    """Delete the dated lists of nights older than ``keep_nights`` before ``newest``; their
    names. A list that cannot be deleted is logged, not raised: tonight's was delivered."""
    pruned = []
    for day, path in sorted(dated_lists(export_dir).items()):
        if day > newest - timedelta(days=keep_nights):
            continue
        try:
            path.unlink()
            pruned.append(path.name)
        except OSError as exc:
            log.warning("cannot delete %s, older than the nights kept: %s", path, _cause(exc))
    return pruned


def refresh_manifest(export_dir: Path) -> bool:
    """Make ``latest.json`` describe ``high_risk_latest.csv`` again after its rows changed
    (an erasure scrubbed them): rows and sha256 recomputed, the rest kept. Whether it was
    rewritten; no manifest or no latest list, nothing to describe."""
    path, latest = export_dir / MANIFEST_FILE, export_dir / LATEST_FILE
    if not path.is_file() or not latest.is_file():
        return False
    old = json.loads(path.read_text(encoding="utf-8"))
    new = old | described(latest.read_text(encoding="utf-8"))
    if new == old:
        return False
    write_json(new, path)
    return True


def _ready(export_dir: Path) -> None:
    """The export dir exists (made when its parent does) or ExportError names why not."""
    where = f"cannot export the high-risk list to {export_dir}"
    if export_dir.exists() and not export_dir.is_dir():
        raise ExportError(f"{where}: it is not a directory")
    if not export_dir.exists() and not export_dir.parent.is_dir():
        raise ExportError(
            f"{where}: neither it nor its parent {export_dir.parent} exists "
            "(mount the volume there, or unset CHURN_EXPORT_DIR)"
        )
    try:
        export_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{where}: {_cause(exc)}") from exc


def _cause(exc: OSError) -> str:
    """The reason alone (``Permission denied``), the path being named by the message."""
    return exc.strerror or str(exc) or type(exc).__name__
