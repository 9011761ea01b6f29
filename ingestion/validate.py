"""Validation gates, a day at a time: raw users and events become validated tables only if
every rule holds.

Layout. ``validated/users.parquet``; ``validated/events/date=D/events.parquet`` holds raw
partition D's events (``raw_store`` keeps each event in its event day's partition), checked
and sorted by time; ``validated/manifest.json`` is the last accepted run's state: the totals,
and per day the raw file it was made from (size, mtime, inode), its rows, oldest and newest
event, rows per type and ``event_id`` range.

What a run reads. A day whose raw file is new or not the one the manifest names (a late
event merged in, a correction from ``churn data ingest --full``) is validated again; the
other days are not read. The users are checked again when their file's hash changed.
``full=True`` (``churn data validate --full``), or a data dir without a day manifest,
validates every day. Days are read, checked and staged one at a time, so memory holds the
users and one day, not the history. Only when every rule holds are the users, then the
staged days (one atomic directory swap per day), then the manifest, last, published: a
crash between leaves days and users the manifest does not name, so the next run validates
them again. On a failure nothing under ``validated/`` changes. (Before, the whole directory
was swapped at once; readers now may see, for an instant, some of a night's days and not
yet the others: each day whole, every event's user already there.)

Rules that span days:
- ``duplicate_events``: its key holds ``event_time``, so a repeat lies in its original's
  day partition: checked within the day (``drop_duplicate_events`` too).
- ``unique_event_id``: within a day in pandas; across days with DuckDB reading only
  ``event_id``, of the days whose id range (manifest) overlaps a changed day's: the changed
  days against each other and the stored days' rows with the changed days' ids. Ids that
  grow with time (sequences, the demo's) make that check read nothing.
- ``volume``: the history's total, the stored days' counts plus the changed days', against
  the last accepted run's total. ``freshness``: the newest of the stored days' newest events
  and the changed days'.
- ``referential_integrity``, ``event_before_signup``: the changed days against the whole
  users file; when the users changed, the stored days against only the users that left or
  whose signup moved later (DuckDB, ``user_id`` and ``event_time``).
- ``future_timestamp``: per day; a stored day cannot become future, as now only moves on.

The report covers what this run read: the days it validated and, when they changed, the
users; its ``stats["days"]`` says which.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core import contract, partitions
from core.atomic import atomic_dir, write_json, write_parquet
from core.settings import Settings
from core.sql_engine import connect, quote_path
from ingestion import raw_store
from ingestion.ingest import arrow_strings, read_arrow_strings
from ingestion.rules import (
    MAX_EXAMPLES,
    Gate,
    RuleFailure,
    ValidationReport,
    drop_repeated_events,
    event_stats,
    merge_failure,
    validate_tables,
)

__all__ = ["RuleFailure", "ValidationReport", "print_report", "run_validation", "validate_tables"]

# Small row groups let a daily run (prepare --as-of) skip all but one day's events.
EVENTS_ROW_GROUP = 128 * 1024
LAYOUT = "days"  # the manifest of a data dir whose validated events are kept by day


def _fingerprint(path: Path) -> dict:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def raw_file_stat(path: Path) -> dict:
    """What tells a raw day's file from its next version: ``raw_store`` replaces a day by a
    new file renamed over it, so its inode and mtime change even when its size does not."""
    st = path.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


@dataclass
class Plan:
    """Which days a run validates (``changed``), keeps unread, or drops (gone from raw)."""

    changed: list[date]
    unchanged: list[date]
    removed: list[date]
    users_changed: bool
    full: bool


def plan_days(raw: dict[date, dict], stored: dict[date, dict] | None, users_changed: bool) -> Plan:
    """Pure: the days whose raw file is not the one the stored day was made from, or all of
    them when ``stored`` is None (a first or full run)."""
    if stored is None:
        return Plan(sorted(raw), [], [], True, True)
    changed = sorted(d for d, stat in raw.items() if stored.get(d, {}).get("raw") != stat)
    unchanged = sorted(d for d in raw if d not in changed)
    removed = sorted(d for d in stored if d not in raw)
    return Plan(changed, unchanged, removed, users_changed, False)


def _manifest(settings: Settings) -> dict | None:
    path = settings.validated_manifest_path
    return json.loads(path.read_text()) if path.is_file() else None


def _stored_days(manifest: dict | None, full: bool) -> dict[date, dict] | None:
    """The manifest's days, or None when every day must be validated."""
    if full or not manifest or manifest.get("layout") != LAYOUT:
        return None
    return {date.fromisoformat(d): v for d, v in manifest["days"].items()}


def _id_range(events: pd.DataFrame) -> list[str] | None:
    """[min, max] of a day's event ids; None when unknown (then it overlaps every day)."""
    ids = events.get("event_id")
    if ids is None or not pd.api.types.is_string_dtype(ids) or ids.isna().all():
        return None
    return [str(ids.min()), str(ids.max())]


@dataclass
class _Run:
    """One run's state: the gate, the days staged so far and their stats."""

    settings: Settings
    gate: Gate
    users: pd.DataFrame | None  # None when no day and not the users are read
    staging: Path
    days: dict[date, dict] = field(default_factory=dict)
    dropped: RuleFailure | None = None
    times_known: bool = True

    def validate_day(self, day: date, path: Path) -> None:
        """Check one raw day; stage it (sorted by time) while no error has been found."""
        events = arrow_strings(pq.read_table(path))
        if self.settings.drop_duplicate_events:
            events, dropped = drop_repeated_events(events)
            if dropped is not None:
                self.dropped = merge_failure(self.dropped, dropped)
        times_ok = self.gate.check_events(self.users, events)
        self.times_known &= times_ok
        self.days[day] = {"raw": raw_file_stat(path), **event_stats(events, times_ok),
                          "event_ids": _id_range(events)}  # fmt: skip
        if self.gate.failed:
            return
        order = np.argsort(events["event_time"].to_numpy(dtype="datetime64[us]"), kind="stable")
        table = contract.to_contract_table(events, contract.EVENT_COLUMNS).take(order)
        target = partitions.partition_dir(self.staging, day) / raw_store.EVENTS_FILE
        target.parent.mkdir(parents=True)
        pq.write_table(table, target, row_group_size=EVENTS_ROW_GROUP)


def _overlaps(a: list[str] | None, b: list[str] | None) -> bool:
    return a is None or b is None or (a[0] <= b[1] and b[0] <= a[1])


def _read_ids(files: list[Path]) -> str:
    names = ", ".join(quote_path(f) for f in files)
    return f"SELECT event_id, date AS day FROM read_parquet([{names}], hive_partitioning = true)"


def shared_event_ids(
    settings: Settings, run: _Run, stored: dict[date, dict], old_files: dict[date, Path]
) -> RuleFailure | None:
    """``unique_event_id`` across days: rows of the changed days, and of stored days, whose
    ``event_id`` is also in another day. Reads only the days whose id ranges overlap."""
    new = {d: v["event_ids"] for d, v in run.days.items()}
    ranges = {**{d: v.get("event_ids") for d, v in stored.items() if d in old_files}, **new}
    new_days = sorted(d for d in new if any(_overlaps(new[d], ranges[o]) for o in ranges if o != d))
    old_days = sorted(
        d for d in old_files if d not in new and any(_overlaps(ranges[d], new[n]) for n in new)
    )
    if not new_days:
        return None
    staged = [partitions.partition_dir(run.staging, d) / raw_store.EVENTS_FILE for d in new_days]
    old = _read_ids([old_files[d] for d in old_days])
    old = f"SELECT * FROM ({old}) WHERE event_id IN (SELECT event_id FROM new)"
    sql = f"""
    WITH new AS ({_read_ids(staged)}),
    ids AS (SELECT * FROM new {f"UNION ALL {old}" if old_days else ""}),
    shared AS (SELECT event_id FROM ids WHERE event_id IS NOT NULL
               GROUP BY event_id HAVING count(DISTINCT day) > 1)
    SELECT day, event_id FROM ids SEMI JOIN shared USING (event_id)
    """
    con = connect(settings)
    try:
        rows = _count(con, f"SELECT count(*) FROM ({sql})")
        first = f"{sql} ORDER BY event_id, day LIMIT {MAX_EXAMPLES}"
        found = con.execute(first).fetchall() if rows else []
    finally:
        con.close()
    if not rows:
        return None
    examples = [{"day": day.isoformat(), "event_id": event_id} for day, event_id in found]
    message = f"{rows} events rows share an event_id with another day's"
    return RuleFailure("unique_event_id", rows, message, examples)


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    """The one number of a ``SELECT count(*)``."""
    row = con.execute(sql).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    return int(row[0])


def users_left_behind(
    settings: Settings, users_file: Path, old_files: list[Path]
) -> list[RuleFailure]:
    """The stored days against changed users: events of users no longer in the users file
    (``referential_integrity``) or before a signup that moved later (``event_before_signup``).
    Only the users that left or moved are joined; nothing is read when there are none."""
    previous = settings.validated_users_path
    if not old_files or not previous.is_file():
        return []
    events = ", ".join(quote_path(f) for f in old_files)
    moved = f"""
    WITH now_users AS (SELECT user_id, min(signup_time) AS signup_time
                       FROM read_parquet({quote_path(users_file)}) GROUP BY user_id),
    moved AS (SELECT o.user_id, n.user_id IS NULL AS gone, n.signup_time
              FROM read_parquet({quote_path(previous)}) o LEFT JOIN now_users n USING (user_id)
              WHERE n.user_id IS NULL OR n.signup_time > o.signup_time)
    """
    matches = f"""{moved}
    SELECT e.event_id, e.user_id, e.event_time, e.event_type, m.gone
    FROM read_parquet([{events}], hive_partitioning = false) e JOIN moved m USING (user_id)
    WHERE m.gone OR e.event_time < m.signup_time
    """
    con = connect(settings)
    try:
        if not _count(con, f"{moved} SELECT count(*) FROM moved"):
            return []
        counts = dict(
            con.execute(f"SELECT gone, count(*) FROM ({matches}) GROUP BY gone").fetchall()
        )
        examples = {
            gone: con.execute(
                f"SELECT * EXCLUDE (gone) FROM ({matches}) WHERE gone = {gone} "
                f"ORDER BY event_time, event_id LIMIT {MAX_EXAMPLES}"
            ).df()
            for gone in counts
        }
    finally:
        con.close()
    rules = {True: ("referential_integrity", "events of users no longer in users"),
             False: ("event_before_signup", "events before the user's new signup")}  # fmt: skip
    return [
        RuleFailure(rules[gone][0], n, f"{n} stored {rules[gone][1]}", _records(examples[gone]))
        for gone, n in sorted(counts.items(), reverse=True)
    ]


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON values (ISO timestamps)."""
    return json.loads(frame.to_json(orient="records", date_format="iso", date_unit="us"))


def _check_raw(settings: Settings) -> tuple[Path, dict[date, Path]]:
    """The raw users file and the raw events' files by day; FileNotFoundError names the
    command that makes a missing one."""
    users_file, root = raw_store.users_path(settings), raw_store.events_root(settings)
    days = {d: partitions.partition_dir(root, d) / raw_store.EVENTS_FILE
            for d in partitions.partition_days(root)}  # fmt: skip
    days = {d: f for d, f in days.items() if f.is_file()}
    for path, there in ((users_file, users_file.is_file()), (root, bool(days))):
        if not there:
            raise FileNotFoundError(
                f"{path} not found: create it with `churn data generate` (demo data) "
                "or `churn data ingest` (your portal's data)"
            )
    return users_file, days


class ValidationRunning(RuntimeError):
    """Another validation holds ``validated/``; this one changed nothing."""


@contextmanager
def validation_lock(settings: Settings) -> Iterator[None]:
    """Hold ``.validate.lock``: one writer of ``validated/`` at a time (a validation, an
    erasure); a second stops at once with ValidationRunning."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / ".validate.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ValidationRunning(
                f"another validation is writing {settings.validated_dir}: try later"
            ) from exc
        yield


@contextmanager
def _staging(settings: Settings) -> Iterator[Path]:
    """A fresh directory beside ``validated/`` (same file system, outside what readers scan),
    removed afterwards. One validation at a time (``validation_lock``)."""
    with validation_lock(settings):
        root = settings.data_dir / ".validated_staging"
        shutil.rmtree(root, ignore_errors=True)  # a crashed run's leftovers
        path = root / uuid.uuid4().hex
        path.mkdir(parents=True)
        try:
            yield path
        finally:
            shutil.rmtree(root, ignore_errors=True)


def run_validation(
    settings: Settings,
    now: datetime | None = None,
    full: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ValidationReport:
    """Validate the raw days that changed since the last accepted run (every day when
    ``full`` or on the first run) and, only if every rule holds, publish them to
    ``validated/`` (see the module docstring: layout, what is read, rules across days).

    The report always goes to ``reports/validation/latest.json``; on a failure nothing under
    ``validated/`` changes and the last accepted tables stay. ``progress(done, total)`` is
    called after each day.
    """
    users_file, raw_files = _check_raw(settings)
    manifest = _manifest(settings)
    users_print = _fingerprint(users_file)
    stored = _stored_days(manifest, full)
    users_changed = (manifest or {}).get("raw_files", {}).get("users", {}).get(
        "sha256") != users_print["sha256"]  # fmt: skip
    raw = {d: raw_file_stat(f) for d, f in raw_files.items()}
    plan = plan_days(raw, stored, users_changed)
    gate = Gate.start(
        now=now or datetime.now(UTC), max_event_age_hours=settings.max_event_age_hours,
        volume_factor=settings.volume_factor, severity=settings.validation_severity,
    )  # fmt: skip
    stored = stored or {}
    old_files = {d: partitions.partition_dir(settings.validated_events_path, d)
                 / raw_store.EVENTS_FILE for d in plan.unchanged}  # fmt: skip
    with _staging(settings) as staging:
        users = read_arrow_strings(users_file) if plan.changed or plan.users_changed else None
        run = _Run(settings, gate, users, staging)
        if plan.users_changed:
            gate.check_users(users)
            if not gate.users_bad:  # else the schema failure already fails the run
                for failure in users_left_behind(settings, users_file, list(old_files.values())):
                    gate.add(failure)
        for done, day in enumerate(plan.changed, 1):
            run.validate_day(day, raw_files[day])
            if progress:
                progress(done, len(plan.changed))
        if not gate.failed and gate.severity.get("unique_event_id") != "off":
            gate.add(shared_event_ids(settings, run, stored, old_files))
        days = {**{d: stored[d] for d in plan.unchanged}, **run.days}
        totals = _totals(days)
        gate.check_history(totals["events"], totals.pop("newest"),
                           (manifest or {}).get("events"), run.times_known)  # fmt: skip
        if users is not None:
            users_count = len(users)
        else:  # neither users nor a day changed: there is a manifest, and it counted them
            assert manifest is not None
            users_count = manifest["users"]
        stats = {"users": users_count, **totals, "previous_events": (manifest or {}).get("events"),
                 "dropped_duplicate_events": run.dropped.count if run.dropped else 0,
                 "raw_files": {"users": users_print, "events": {
                     "path": str(raw_store.events_root(settings)), "files": len(raw_files),
                     "bytes": sum(s["bytes"] for s in raw.values())}},
                 "days": _days_stats(plan, run)}  # fmt: skip
        report = gate.report(stats)
        if run.dropped is not None:
            report.warnings.insert(0, run.dropped)
        if report.passed:
            _publish(settings, plan, run, {**stats, "days": days})
    write_json(report.to_dict(), settings.reports_dir / "validation" / "latest.json")
    return report


def _totals(days: dict[date, dict]) -> dict:
    """The history's rows, oldest and newest event and rows per type, from per-day stats."""
    newest = [pd.Timestamp(v["newest_event"]) for v in days.values() if v["newest_event"]]
    oldest = [pd.Timestamp(v["oldest_event"]) for v in days.values() if v["oldest_event"]]
    per_type: dict[str, int] = {}
    for v in days.values():
        for kind, n in v["events_per_type"].items():
            per_type[kind] = per_type.get(kind, 0) + n
    return {
        "events": sum(v["events"] for v in days.values()),
        "newest_event": max(newest).isoformat() if newest else None,
        "oldest_event": min(oldest).isoformat() if oldest else None,
        "events_per_type": per_type,
        "newest": max(newest) if newest else None,
    }


def _days_stats(plan: Plan, run: _Run) -> dict:
    """What the run read: the days validated (and their rows), kept unread, or dropped."""
    return {
        "full": plan.full,
        "validated": [d.isoformat() for d in plan.changed],
        "rows_read": sum(v["events"] for v in run.days.values()),
        "unchanged": len(plan.unchanged),
        "removed": [d.isoformat() for d in plan.removed],
        "users_checked": plan.users_changed,
    }


def _publish(settings: Settings, plan: Plan, run: _Run, stats: dict) -> None:
    """The users first (a reader never sees an event of a user not yet published), then the
    staged days (one atomic swap each), drop the days gone from raw, then the manifest: it
    names only what is in place, so a crash between leaves days the next run validates."""
    if plan.users_changed:
        users = contract.to_contract_table(run.users, contract.USER_COLUMNS)
        write_parquet(users, settings.validated_users_path)
    root = settings.validated_events_path
    for day in plan.changed:
        staged = partitions.partition_dir(run.staging, day) / raw_store.EVENTS_FILE
        with atomic_dir(partitions.partition_dir(root, day), staging=run.staging) as out:
            os.replace(staged, out / raw_store.EVENTS_FILE)
    in_raw = {*plan.changed, *plan.unchanged}
    gone = [d for d in partitions.partition_days(root) if d not in in_raw]
    for day in gone:
        shutil.rmtree(partitions.partition_dir(root, day), ignore_errors=True)
    settings.validated_events_legacy_path.unlink(missing_ok=True)  # the layout before days
    keys = ("users", "events", "newest_event", "oldest_event", "raw_files")
    days = {d.isoformat(): v for d, v in sorted(stats["days"].items())}
    manifest = {**{k: stats[k] for k in keys}, "layout": LAYOUT, "days": days,
                "checked_at": run.gate.now.isoformat()}  # fmt: skip
    write_json(manifest, settings.validated_manifest_path)


@dataclass(frozen=True)
class ManifestCheck:
    """Which raw files the manifest still describes, taken before an erasure rewrites raw:
    the days whose raw file is the one their validated day was made from, and whether the
    users file is."""

    days: frozenset[date]
    users: bool


def manifest_check(settings: Settings) -> ManifestCheck | None:
    """What the manifest describes of raw now; None without a day manifest (the next run
    then validates every day whatever an erasure does)."""
    manifest = _manifest(settings)
    stored = _stored_days(manifest, full=False)
    if manifest is None or stored is None:
        return None
    users_file = raw_store.users_path(settings)
    users = users_file.is_file() and manifest.get("raw_files", {}).get("users", {}).get(
        "sha256") == _fingerprint(users_file)["sha256"]  # fmt: skip
    days = frozenset(
        day for day, entry in stored.items()
        if (raw := _raw_day_file(settings, day)).is_file() and entry.get("raw") == raw_file_stat(raw)
    )  # fmt: skip
    return ManifestCheck(days, users)


def _raw_day_file(settings: Settings, day: date) -> Path:
    return partitions.partition_dir(raw_store.events_root(settings), day) / raw_store.EVENTS_FILE


def after_erasure(settings: Settings, before: ManifestCheck | None, rewritten: set[Path]) -> None:
    """Make the manifest describe ``validated/`` and raw again after an erasure rewrote the
    files ``rewritten`` (taken under ``validation_lock`` and the raw store's lock).

    A rewritten validated day gets its stats from its new file; a day whose raw file the
    manifest described ``before`` gets the new file's fingerprint, so the next run neither
    validates it again nor misses it; a day it no longer described (a late event not yet
    validated) keeps the old one, so the next run validates it as it would have. The users'
    fingerprint likewise; the totals follow the days."""
    manifest = _manifest(settings)
    if before is None or manifest is None or manifest.get("layout") != LAYOUT:
        return
    root = settings.validated_events_path
    for key, entry in manifest["days"].items():
        day = date.fromisoformat(key)
        validated = partitions.partition_dir(root, day) / raw_store.EVENTS_FILE
        if validated in rewritten:
            events = arrow_strings(pq.read_table(validated))
            entry.update(event_stats(events, True), event_ids=_id_range(events))
        raw = _raw_day_file(settings, day)
        if day in before.days and raw.is_file():
            entry["raw"] = raw_file_stat(raw)
    users_file = raw_store.users_path(settings)
    if before.users and users_file.is_file():
        manifest["raw_files"]["users"] = _fingerprint(users_file)
    if (users := settings.validated_users_path).is_file():
        manifest["users"] = pq.ParquetFile(users).metadata.num_rows
    days = {date.fromisoformat(k): v for k, v in manifest["days"].items()}
    totals = _totals(days)
    totals.pop("newest")
    manifest.update({k: totals[k] for k in ("events", "newest_event", "oldest_event")})
    if "events" in manifest.get("raw_files", {}):
        manifest["raw_files"]["events"]["bytes"] = sum(
            v["raw"]["bytes"] for v in days.values() if "raw" in v
        )
    write_json(manifest, settings.validated_manifest_path)


def print_report(report: ValidationReport, console: Console) -> None:
    """Print the verdict, what was read, the table sizes and one row per broken rule with
    its examples."""
    verdict = "[green]passed[/]" if report.passed else "[bold red]FAILED[/]"
    s = report.stats
    console.print(
        f"Validation {verdict}: {s['users']} users, {s['events']} events, "
        f"newest event {s['newest_event']} (now = {report.checked_at.isoformat()})"
    )
    if days := s.get("days"):
        console.print(Text(_days_line(days), style="dim"))
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


def _days_line(days: dict) -> str:
    """'validated 1 day (2025-03-01), 812 rows read; 119 days unchanged, not read'."""
    checked = days["validated"]
    span = f"{checked[0]}..{checked[-1]}" if len(checked) > 1 else "".join(checked)
    line = (f"  {'full run: ' if days['full'] else ''}validated {len(checked)} day(s)"
            f"{f' ({span})' if checked else ''}, {days['rows_read']:,} rows read; "
            f"{days['unchanged']} day(s) unchanged, not read")  # fmt: skip
    if days["removed"]:
        line += f"; {len(days['removed'])} day(s) gone from raw, removed"
    return line + ("; users checked" if days["users_checked"] else "; users unchanged")
