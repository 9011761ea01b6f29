"""Validation gates: raw users and events become validated tables only if every rule holds.

``run_validation`` reads ``raw/``, applies ``ingestion.rules.validate_tables`` and,
only on a pass, replaces ``validated/`` as a whole; the report is always written.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core import contract
from core.atomic import atomic_dir, write_json, write_parquet
from core.settings import Settings
from ingestion import raw_store
from ingestion.ingest import arrow_strings, read_arrow_strings
from ingestion.rules import (
    MAX_EXAMPLES,
    RuleFailure,
    ValidationReport,
    drop_repeated_events,
    validate_tables,
)

__all__ = ["RuleFailure", "ValidationReport", "print_report", "run_validation", "validate_tables"]

# Small row groups let a daily run (prepare --as-of) skip all but one day's events.
EVENTS_ROW_GROUP = 128 * 1024


def _fingerprint(path: Path) -> dict:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def run_validation(settings: Settings, now: datetime | None = None) -> ValidationReport:
    """Validate ``raw/`` (``ingestion.raw_store``) and, only if every rule holds, publish it to ``validated/``.

    The report always goes to ``reports/validation/latest.json``. On a pass the
    users, the events (sorted by event_time, so readers can skip row groups by
    time) and ``manifest.json`` replace ``validated/`` in one swap; on a failure
    nothing under ``validated/`` changes and the last accepted tables stay.
    """
    users_file, event_files = raw_store.users_path(settings), raw_store.event_files(settings)
    for path, there in ((users_file, users_file.is_file()),
                        (raw_store.events_root(settings), bool(event_files))):  # fmt: skip
        if not there:
            raise FileNotFoundError(
                f"{path} not found: create it with `churn data generate` (demo data) "
                "or `churn data ingest` (your portal's data)"
            )
    manifest_path = settings.validated_dir / "manifest.json"
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    users = read_arrow_strings(users_file)
    events = arrow_strings(raw_store.read_events(settings))
    dropped = None
    if settings.drop_duplicate_events:
        events, dropped = drop_repeated_events(events)
    report = validate_tables(
        users,
        events,
        now=now or datetime.now(UTC),
        max_event_age_hours=settings.max_event_age_hours,
        volume_factor=settings.volume_factor,
        previous=previous,
        severity=settings.validation_severity,
    )
    if dropped is not None:
        report.warnings.insert(0, dropped)
    report.stats["dropped_duplicate_events"] = dropped.count if dropped else 0
    report.stats["raw_files"] = {"users": _fingerprint(users_file), "events": {
        "path": str(raw_store.events_root(settings)), "files": len(event_files),
        "bytes": sum(f.stat().st_size for f in event_files)}}  # fmt: skip
    if report.passed:
        order = np.argsort(events["event_time"].to_numpy(dtype="datetime64[us]"), kind="stable")
        keys = ("users", "events", "newest_event", "oldest_event", "raw_files")
        manifest = {key: report.stats[key] for key in keys}
        # One swap of the whole directory: readers never see new users with old events.
        with atomic_dir(settings.validated_dir) as out:
            users_table = contract.to_contract_table(users, contract.USER_COLUMNS)
            write_parquet(users_table, out / "users.parquet")
            events_table = contract.to_contract_table(events, contract.EVENT_COLUMNS).take(order)
            write_parquet(events_table, out / "events.parquet", row_group_size=EVENTS_ROW_GROUP)
            write_json(
                {**manifest, "checked_at": report.checked_at.isoformat()}, out / "manifest.json"
            )
    write_json(report.to_dict(), settings.reports_dir / "validation" / "latest.json")
    return report


def print_report(report: ValidationReport, console: Console) -> None:
    """Print the verdict, the table sizes and one row per broken rule with its examples."""
    verdict = "[green]passed[/]" if report.passed else "[bold red]FAILED[/]"
    s = report.stats
    console.print(
        f"Validation {verdict}: {s['users']} users, {s['events']} events, "
        f"newest event {s['newest_event']} (now = {report.checked_at.isoformat()})"
    )
    for rule, reason in s.get("skipped", {}).items():
        console.print(Text(f"  skipped {rule}: {reason}", style="dim"))
    for title, failures, style in (
        ("Warnings (relaxed rules: the run goes on)", report.warnings, "yellow"),
        ("Errors", report.failures, "bold red"),
    ):
        if not failures:
            continue
        table = Table("rule", "count", "message", "examples (up to 5)", show_lines=True)
        table.title = Text(title, style=style)
        for f in failures:
            rows = "\n".join(json.dumps(row, default=str) for row in f.examples[:MAX_EXAMPLES])
            table.add_row(Text(f.rule, style=style), str(f.count), Text(f.message), Text(rows))
        console.print(table)
