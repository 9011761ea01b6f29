"""Erasure (GDPR Art. 17): ``forget`` removes learners from everything the product stores,
and records it so that no later ingest brings them back.

What it does, in order, holding the raw store's and the validation's locks (an ingest or
a validation running meanwhile stops at once, and the erasure waits for neither):

1. Which stored model versions saw the learners (``training.exposure``): asked first, while
   their rows are there to count.
2. Every file under the data dir and the artifacts dir is scrubbed (``core.scrub``): the
   rows naming them leave raw, validated, the daily tables, the features, the predictions,
   the high-risk lists, the outreach assignments, the ground truth, the models' stored
   validation rows, and the reports and histories that name them as examples; and, with
   ``CHURN_EXPORT_DIR`` set, the lists delivered there (dated and latest), whose manifest is
   then rewritten to describe the scrubbed latest list (``batch.export``). Files that
   name none of them are not rewritten. A file in a format that cannot be rewritten but
   whose bytes name one of them is reported (``left``), never silently kept.
3. The validated manifest is made to describe the rewritten days again
   (``ingestion.validate.after_erasure``), so the next night neither validates them again
   nor misses a late day.
4. Their keys leave the online store (``feature_repo.online_erasure``): the API answers
   404 for them from the next request on.
5. The erasure record (``ingestion.erasure_record``) gains a line: the ids' keyed hashes,
   when, and how many rows went where. The raw store drops their rows from every later
   ingest.

Not covered: the source itself (the portal's database, a landing folder), which is the
portal's to erase; and what a model learnt, which leaves with retraining.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import redis
from rich.console import Console
from rich.table import Table

from batch.export import refresh_manifest
from core.redaction import redact
from core.scrub import SCRUBBED_SUFFIXES, names_any, scrub_file
from core.settings import Settings
from feature_repo.online_erasure import OnlineErasure, forget_online
from feature_repo.redis_server import PRIVATE_DIR
from feature_repo.spec import ENTITY_KEY
from ingestion import raw_store, validate
from ingestion.erasure_record import erasure_dir, record_erasure, record_path
from training.exposure import Exposure, exposures

log = logging.getLogger(__name__)


@dataclass
class Removed:
    """Files rewritten and rows (or values) removed in one place."""

    files: int = 0
    rows: int = 0


@dataclass
class ErasureReport:
    """What one ``forget`` did, without the ids: how many learners, rows removed by place,
    the online store's keys, the versions that saw them, and what could not be erased."""

    users: int
    forgotten_at: datetime
    removed: dict[str, Removed] = field(default_factory=dict)
    online: OnlineErasure | None = None
    online_error: str | None = None
    models: list[Exposure] = field(default_factory=list)
    left: list[Path] = field(default_factory=list)
    record: Path | None = None

    @property
    def complete(self) -> bool:
        """Nothing left that names them: every file scrubbed and the online store reached."""
        return self.online_error is None and not self.left


def clean_ids(user_ids: Iterable[str]) -> list[str]:
    """The ids, stripped, each once, in the order given; ValueError when there is none or
    one is blank."""
    ids = [str(u).strip() for u in user_ids]
    if not ids:
        raise ValueError("no user id given: churn forget USER_ID… (or --ids-file FILE)")
    if any(not u for u in ids):
        raise ValueError("a user id is blank: give the ids as the portal stores them")
    return list(dict.fromkeys(ids))


def places(settings: Settings) -> list[tuple[str, Path]]:
    """Where the product stores users, most specific first: a file's place is the first
    that holds it (one name per place in the report). The export dir, chosen by the
    operator and possibly inside another place, comes first."""
    exported = [("exported lists", settings.export_dir)] if settings.export_dir else []
    return [
        *exported,
        ("raw users", raw_store.users_path(settings)),
        ("raw events", raw_store.events_root(settings)),
        ("raw (other)", settings.raw_dir),
        ("validated users", settings.validated_users_path),
        ("validated events", settings.validated_dir),
        ("user_daily", settings.user_daily_path),
        ("user_courses", settings.user_courses_path),
        ("features", settings.features_path),
        ("predictions", settings.predictions_dir),
        ("outreach assignments", settings.outreach_dir),
        ("ground truth", settings.ground_truth_dir),
        ("model validation rows", settings.models_dir),
        ("reports", settings.reports_dir),
        ("monitoring", settings.monitoring_dir),
    ]


def place_of(path: Path, known: list[tuple[str, Path]], roots: list[Path]) -> str:
    """The name of the place holding ``path``; else its top folder under a root."""
    for name, where in known:
        if path == where or path.is_relative_to(where):
            return name
    for root in roots:
        if path.is_relative_to(root):
            return f"other: {path.relative_to(root).parts[0]}"
    return "other"


def roots(settings: Settings) -> list[Path]:
    """The directories the product writes users into: the data dir, the artifacts dir and,
    when set, the export dir."""
    return [settings.data_dir, settings.artifacts_dir, *filter(None, [settings.export_dir])]


def stored_files(settings: Settings) -> Iterator[Path]:
    """Every file under ``roots``, each once, but the erasure record's (hashes only) and a
    private Redis server's (the server rewrites those)."""
    skip = {erasure_dir(settings), settings.data_dir / PRIVATE_DIR}
    if settings.export_dir and not settings.export_dir.is_dir():
        log.warning("%s (CHURN_EXPORT_DIR) is not here: lists exported there are not "
                    "scrubbed; run `churn forget` where it is mounted", settings.export_dir)  # fmt: skip
    seen: set[Path] = set()
    for root in roots(settings):
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if here / d not in skip)
            for name in sorted(files):
                path = here / name
                if path not in seen and not path.is_symlink():
                    seen.add(path)
                    yield path


@dataclass
class Sweep:
    """What scrubbing every stored file did."""

    removed: dict[str, Removed] = field(default_factory=dict)
    rewritten: set[Path] = field(default_factory=set)
    left: list[Path] = field(default_factory=list)


def sweep(settings: Settings, ids: frozenset[str], into: Sweep | None = None) -> Sweep:
    """Scrub ``ids`` out of every stored file (``stored_files``); counted in ``into`` as it
    goes, so a sweep that fails half way still says what it did. An export dir whose lists
    lost rows gets its manifest rewritten last, as the export writes it."""
    known, under = places(settings), roots(settings)
    result = into if into is not None else Sweep()
    for path in stored_files(settings):
        rows = _scrubbed(path, ids)
        if rows is None:
            result.left.append(path)
        elif rows:
            result.rewritten.add(path)
            place = result.removed.setdefault(place_of(path, known, under), Removed())
            place.files += 1
            place.rows += rows
    export_dir = settings.export_dir
    if export_dir and any(p.is_relative_to(export_dir) for p in result.rewritten):
        refresh_manifest(export_dir)
    return result


def _scrubbed(path: Path, ids: frozenset[str]) -> int | None:
    """Rows removed from ``path``; None when it names an id and cannot be rewritten."""
    if path.suffix.lower() in SCRUBBED_SUFFIXES:
        try:
            return scrub_file(path, ids, ENTITY_KEY)
        except (ValueError, pa.ArrowException, UnicodeDecodeError) as exc:
            log.warning("%s cannot be scrubbed (%s): looking at its bytes", path, exc)
    try:
        return None if names_any(path, ids) else 0
    except FileNotFoundError:  # a temporary file gone since the listing
        return 0


def _report_sweep(report: ErasureReport, swept: Sweep, settings: Settings) -> None:
    """The sweep's counts into the report, the known places first, in ``places`` order."""
    order = [name for name, _ in places(settings)]

    def rank(place: str) -> tuple[int, str]:
        return (order.index(place), "") if place in order else (len(order), place)

    report.removed = dict(sorted(swept.removed.items(), key=lambda item: rank(item[0])))
    report.left = swept.left


def _record(settings: Settings, ids: list[str], report: ErasureReport, failed: str | None) -> None:
    """The run's line in the erasure record (``failed``: why it stopped half way)."""
    root = settings.data_dir
    record_erasure(
        settings, ids, report.forgotten_at,
        {place: {"files": r.files, "rows": r.rows} for place, r in report.removed.items()},
        online_keys=report.online.keys if report.online else None,
        online_error=report.online_error,
        models=[m.to_dict() for m in report.models],
        left=[str(p.relative_to(root) if p.is_relative_to(root) else p) for p in report.left],
        **({"failed": failed} if failed else {}),
    )  # fmt: skip
    report.record = record_path(settings)


def forget(
    settings: Settings, user_ids: Iterable[str], now: datetime | None = None
) -> ErasureReport:
    """Erase the learners ``user_ids`` (see the module docstring); the report says what was
    removed where, without the ids. Raises ValueError for no or blank ids, IngestRunning or
    ValidationRunning when a writer of raw or validated data runs (nothing changed then).

    Once files start changing, the record gets its line whatever happens, so a run that
    fails half way (then run again) already keeps every later ingest from them."""
    ids = clean_ids(user_ids)
    now = now or datetime.now(UTC)
    with raw_store.ingest_lock(settings), validate.validation_lock(settings):
        report = ErasureReport(users=len(ids), forgotten_at=now, models=exposures(settings, ids))
        before = validate.manifest_check(settings)
        swept, failed = Sweep(), None
        try:
            sweep(settings, frozenset(ids), into=swept)
            validate.after_erasure(settings, before, swept.rewritten)
            try:
                report.online = forget_online(settings, ids)
            except redis.RedisError as exc:
                report.online_error = redact(f"{type(exc).__name__}: {exc}")
        except BaseException as exc:
            failed = redact(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            _report_sweep(report, swept, settings)
            _record(settings, ids, report, failed)
    log.info(
        "forgot %d learner(s): %d rows in %d files, %d online keys, %d model versions saw them",
        report.users, sum(r.rows for r in report.removed.values()),
        sum(r.files for r in report.removed.values()),
        report.online.keys if report.online else 0, len(report.models),
    )  # fmt: skip
    return report


def print_report(report: ErasureReport, console: Console) -> None:
    """The rows removed by place, the online store, the versions that saw the learners,
    the record, and what is left (never an id: the command shows those itself)."""
    table = Table("where", "files", "rows removed", title="Erased")
    for place, removed in report.removed.items():
        table.add_row(place, f"{removed.files:,}", f"{removed.rows:,}")
    if not report.removed:
        table.add_row("[dim]nothing stored named them[/dim]", "", "")
    console.print(table)
    if report.online is not None:
        console.print(f"online store: {report.online.keys:,} key(s) deleted; "
                      f"{report.online.persistence}")  # fmt: skip
    else:
        console.print(f"[red]online store not reached:[/red] {report.online_error}; run "
                      "`churn forget` again when it answers")  # fmt: skip
    for model in report.models:
        saw = [what for what, yes in (
            ("its fit window covered their active days", model.fit_window),
            (f"{model.validation_rows:,} validation row(s), removed", model.validation_rows),
        ) if yes]  # fmt: skip
        note = f" ({model.sample})" if model.sample else ""
        console.print(f"model {model.version} saw them: {'; '.join(saw)}{note}")
    if any(m.fit_window for m in report.models):
        console.print("  a model keeps what it learnt: retrain (`churn train`, `churn promote`) "
                      "to leave them out")  # fmt: skip
    for path in report.left:
        console.print(f"[red]still names them, cannot be rewritten:[/red] {path}")
    console.print(f"recorded as keyed hashes in {report.record}: no ingest brings them back")
