"""The raw tables every source lands in: users, and events partitioned by event day.

``raw/users.parquet`` holds one row per user (an ingest upserts: new users are added,
known ones take the source's newer values). ``raw/events/date=D/events.parquet`` holds
day D's events, one file per day, sorted by time. Events are immutable facts: an
``event_id`` already stored is never stored again, and a row changed at the source
after it was ingested keeps its first version (counted, not applied). So re-running an
ingest, or a source's look-back reading rows twice, adds nothing.

Learners forgotten (``churn forget``, ``ingestion.erasure_record``) are dropped on the way
in, events and users alike, whatever the source: ``Landed`` counts them.

An ingest first stages what it read (``raw/.staging/``), then merges each staged day
into its partition (each an atomic file swap), then upserts the users. Until the merge,
nothing a reader sees has changed; a crash during it leaves whole days, and the next
run, reading from the same mark, fills in the rest without duplicates.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import contract, partitions
from core.atomic import write_json, write_parquet
from core.settings import Settings
from ingestion.erasure_record import Forgotten

log = logging.getLogger(__name__)

EVENTS_FILE = "events.parquet"
PENDING_FILE = "pending_days.json"
NO_TIME_DAY = date(1970, 1, 1)  # where events without a time are kept, for the gates


def users_path(settings: Settings) -> Path:
    return settings.raw_dir / "users.parquet"


def events_root(settings: Settings) -> Path:
    return settings.raw_dir / "events"


def event_files(settings: Settings) -> list[Path]:
    """Every day's events file, oldest day first."""
    root = events_root(settings)
    return [Path(f) for f in partitions.partition_files(root, partitions.partition_days(root))]


def read_events(settings: Settings) -> pa.Table:
    """All raw events as one table (empty, with the contract schema, when none).

    Read as stored, not cast: a file written around the sources (by hand, by an older
    version) is for the validation gates to judge, naming the column.
    """
    files = event_files(settings)
    if not files:
        return contract.contract_schema(contract.EVENT_COLUMNS).empty_table()
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


@dataclass
class Landed:
    """What an ingest added: new events, events it already had, the days that received
    events (the daily tables to rebuild), users added or changed, and the rows of forgotten
    learners it dropped (events, user rows)."""

    events: int = 0
    already_stored: int = 0
    days: set[date] = field(default_factory=set)
    users: int = 0
    forgotten_events: int = 0
    forgotten_users: int = 0

    def add(self, other: Landed) -> None:
        self.events += other.events
        self.already_stored += other.already_stored
        self.days |= other.days
        self.users += other.users
        self.forgotten_events += other.forgotten_events
        self.forgotten_users += other.forgotten_users

    def to_dict(self) -> dict:
        return {"events": self.events, "already_stored": self.already_stored,
                "days": sorted(d.isoformat() for d in self.days), "users": self.users,
                "forgotten_events": self.forgotten_events,
                "forgotten_users": self.forgotten_users}  # fmt: skip


def _without_forgotten(forgotten: Forgotten | None, table: pa.Table) -> tuple[pa.Table, int]:
    """``table`` less the rows of forgotten learners, and how many (logged, never the ids)."""
    if forgotten is None or table.num_rows == 0:
        return table, 0
    kept, dropped = forgotten.drop(table)
    if dropped:
        log.info("dropped %d rows of forgotten learners (the erasure record)", dropped)
    return kept, dropped


class Staging:
    """Events read from a source, parked by event day until ``merge``; those of forgotten
    learners are dropped here, and counted (``forgotten_rows``)."""

    def __init__(self, root: Path, forgotten: Forgotten | None = None) -> None:
        self.root = root
        self.rows = 0
        self.forgotten = forgotten
        self.forgotten_rows = 0

    def add(self, events: pa.Table) -> None:
        """Park a chunk of contract-typed events (any size; memory is the chunk's)."""
        self.rows += events.num_rows
        events, dropped = _without_forgotten(self.forgotten, events)
        self.forgotten_rows += dropped
        if events.num_rows == 0:
            return
        days = pc.cast(events["event_time"], pa.date32())
        for day in pc.unique(days).to_pylist():
            if day is None:  # no time: validation's job to report, so kept under its own key
                chunk = events.filter(pc.is_null(days))
            else:
                chunk = events.filter(pc.equal(days, pa.scalar(day, pa.date32())))
            target = self._day_dir(day)
            target.mkdir(parents=True, exist_ok=True)
            pq.write_table(chunk, target / f"{uuid.uuid4().hex}.parquet")

    def _day_dir(self, day: date | None) -> Path:
        return self.root / (f"date={day.isoformat()}" if day else "no-time")

    def days(self) -> list[date | None]:
        names = sorted(p.name for p in self.root.iterdir()) if self.root.is_dir() else []
        return [None if n == "no-time" else date.fromisoformat(n.split("=", 1)[1]) for n in names]

    def read(self, day: date | None) -> pa.Table:
        schema = contract.contract_schema(contract.EVENT_COLUMNS)
        files = sorted(self._day_dir(day).glob("*.parquet"))
        return pa.concat_tables(pq.read_table(f, schema=schema) for f in files)


class IngestRunning(RuntimeError):
    """Another ingest holds the raw tables; this one changed nothing."""


@contextmanager
def ingest_lock(settings: Settings) -> Iterator[None]:
    """Hold ``raw/.ingest.lock``: one writer of the raw tables at a time (an ingest, an
    erasure); a second stops at once with IngestRunning."""
    settings.raw_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.raw_dir / ".ingest.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IngestRunning(f"another ingest is writing {settings.raw_dir}: try later") from exc
        yield


@contextmanager
def staging(settings: Settings) -> Iterator[Staging]:
    """A fresh staging area under ``raw/.staging``, removed afterwards whatever happens
    (a crashed run's leftovers are removed by the next), under ``ingest_lock``. It drops
    the events of the learners the erasure record lists."""
    with ingest_lock(settings):
        forgotten = Forgotten.load(settings)
        root = settings.raw_dir / ".staging"
        shutil.rmtree(root, ignore_errors=True)
        try:
            yield Staging(root / uuid.uuid4().hex, forgotten)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def merge(settings: Settings, staged: Staging) -> Landed:
    """Merge every staged day into its partition: new ``event_id``s only, sorted by time."""
    landed = Landed(forgotten_events=staged.forgotten_rows)
    for day in staged.days():
        landed.add(merge_day(settings, day, staged.read(day)))
    add_pending(settings, landed.days)
    return landed


def merge_day(settings: Settings, day: date | None, events: pa.Table) -> Landed:
    """Day ``day``'s partition gains the events of ``events`` it does not hold yet.

    Events without a time are stored under the epoch's day so that validation sees and
    rejects them (a missing time is a contract error, not something to drop silently).
    """
    day = day or NO_TIME_DAY
    target = partitions.partition_dir(events_root(settings), day) / EVENTS_FILE
    schema = contract.contract_schema(contract.EVENT_COLUMNS)
    stored = pq.read_table(target, schema=schema) if target.is_file() else schema.empty_table()
    fresh = _first_of_each_id(events.cast(schema))
    known = pc.is_in(fresh["event_id"], value_set=stored["event_id"])
    new = fresh.filter(pc.invert(known))
    already = events.num_rows - new.num_rows
    if new.num_rows == 0:
        return Landed(already_stored=already)
    merged = pa.concat_tables([stored, new]).sort_by([("event_time", "ascending"),
                                                       ("event_id", "ascending")])  # fmt: skip
    write_parquet(merged, target)
    return Landed(events=new.num_rows, already_stored=already, days=_dated(day))


def _dated(day: date) -> set[date]:
    """The day to rebuild downstream: none for the events without a time (kept under the
    epoch for the gates to refuse, never a day of ``user_daily``)."""
    return set() if day == NO_TIME_DAY else {day}


def _first_of_each_id(events: pa.Table) -> pa.Table:
    """One row per ``event_id``: the first read. Rows without an id are all kept
    (validation rejects them, naming the rule)."""
    ids = events["event_id"]
    with_id = events.filter(pc.is_valid(ids))
    return pa.concat_tables([_one_per_key(with_id, "event_id", "min"),
                             events.filter(pc.is_null(ids))])  # fmt: skip


def _one_per_key(table: pa.Table, key: str, which: str) -> pa.Table:
    """The ``min`` (first) or ``max`` (last) row of each ``key``, in the table's order."""
    index = pa.array(range(table.num_rows), pa.int64())
    picked = (
        pa.table({key: table[key], "i": index})
        .group_by(key, use_threads=False)
        .aggregate([("i", which)])[f"i_{which}"]
    )
    return table.take(pc.take(picked, pc.sort_indices(picked)))


def upsert_users(settings: Settings, users: pa.Table) -> Landed:
    """Add new users and take the given values for known ones: ``users`` counts those added
    or changed, ``forgotten_users`` the rows of forgotten learners left out."""
    schema = contract.contract_schema(contract.USER_COLUMNS)
    users, forgotten = _without_forgotten(Forgotten.load(settings), users)
    incoming = _last_of_each_user(users.cast(schema))
    path = users_path(settings)
    if not path.is_file():
        write_parquet(incoming.sort_by("user_id"), path)
        return Landed(users=incoming.num_rows, forgotten_users=forgotten)
    stored = pq.read_table(path, schema=schema)
    kept = stored.filter(pc.invert(pc.is_in(stored["user_id"], value_set=incoming["user_id"])))
    unchanged = _unchanged(stored, incoming)
    if unchanged == incoming.num_rows:
        return Landed(forgotten_users=forgotten)
    write_parquet(pa.concat_tables([kept, incoming]).sort_by("user_id"), path)
    return Landed(users=incoming.num_rows - unchanged, forgotten_users=forgotten)


def _last_of_each_user(users: pa.Table) -> pa.Table:
    return _one_per_key(users, "user_id", "max")


def _unchanged(stored: pa.Table, incoming: pa.Table) -> int:
    """How many incoming user rows equal the stored row of the same user."""
    joined = incoming.join(stored, "user_id", join_type="inner", right_suffix="_stored")
    same = None
    for name in contract.USER_COLUMNS:
        if name == "user_id":
            continue
        left, right = joined[name], joined[f"{name}_stored"]
        equal = pc.or_kleene(pc.equal(left, right), pc.and_(pc.is_null(left), pc.is_null(right)))
        equal = pc.fill_null(equal, False)
        same = equal if same is None else pc.and_(same, equal)
    return int(pc.sum(same).as_py() or 0) if same is not None else joined.num_rows


def replace_all(settings: Settings, users: pa.Table, events: Iterable[pa.Table]) -> Landed:
    """Raw becomes exactly ``users`` and ``events`` (a full export, or the demo's world).

    Every chunk is read and staged before anything changes: an input that fails to read
    leaves the raw tables as they were.
    """
    with staging(settings) as staged:
        for chunk in events:
            staged.add(chunk)
        return replace_with(settings, users, staged)


def replace_with(settings: Settings, users: pa.Table, staged: Staging) -> Landed:
    """Raw becomes exactly ``users`` and the ``staged`` events: a source read whole. Only
    days whose events differ are rewritten (and become pending), so a full export, or a
    re-read after corrections at the source, costs the days that changed downstream."""
    landed = Landed(forgotten_events=staged.forgotten_rows)
    root = events_root(settings)
    incoming = {day or NO_TIME_DAY for day in staged.days()}
    for day in partitions.partition_days(root):
        if day not in incoming:  # the source no longer has this day
            shutil.rmtree(partitions.partition_dir(root, day))
            landed.days |= _dated(day)
    for staged_day in staged.days():
        landed.add(_replace_day(settings, staged_day, staged.read(staged_day)))
    landed.add(_replace_users(settings, users, staged.forgotten))
    add_pending(settings, landed.days)
    return landed


def _replace_users(settings: Settings, users: pa.Table, forgotten: Forgotten | None) -> Landed:
    """The users table becomes ``users`` less the forgotten learners: the count of users
    added or changed, and of forgotten rows left out."""
    schema = contract.contract_schema(contract.USER_COLUMNS)
    users, dropped = _without_forgotten(forgotten, users)
    new = _last_of_each_user(users.cast(schema)).sort_by("user_id")
    path = users_path(settings)
    stored = pq.read_table(path, schema=schema) if path.is_file() else schema.empty_table()
    if stored.equals(new):
        return Landed(forgotten_users=dropped)
    write_parquet(new, path)
    return Landed(users=new.num_rows - _unchanged(stored, new), forgotten_users=dropped)


def _replace_day(settings: Settings, day: date | None, events: pa.Table) -> Landed:
    """Day ``day`` becomes ``events`` (one row per id); untouched when its content is the same."""
    day = day or NO_TIME_DAY
    target = partitions.partition_dir(events_root(settings), day) / EVENTS_FILE
    schema = contract.contract_schema(contract.EVENT_COLUMNS)
    new = _first_of_each_id(events.cast(schema)).sort_by([("event_time", "ascending"),
                                                           ("event_id", "ascending")])  # fmt: skip
    if target.is_file() and pq.read_table(target, schema=schema).equals(new):
        return Landed(already_stored=new.num_rows)
    write_parquet(new, target)
    return Landed(events=new.num_rows, days=_dated(day))


def pending_days(settings: Settings) -> list[date]:
    """Days that received events since their daily tables were last built, oldest first."""
    path = settings.raw_dir / PENDING_FILE
    return (
        sorted(date.fromisoformat(d) for d in json.loads(path.read_text()))
        if path.is_file()
        else []
    )


def add_pending(settings: Settings, days: Iterable[date]) -> None:
    """Remember days whose ``user_daily`` and features must be rebuilt (late events)."""
    days = set(days)
    if days - set(pending_days(settings)):
        _write_pending(settings, set(pending_days(settings)) | days)


def clear_pending(settings: Settings, days: Iterable[date]) -> None:
    """Forget days whose daily tables and features were rebuilt."""
    left = set(pending_days(settings)) - set(days)
    _write_pending(settings, left)


def _write_pending(settings: Settings, days: set[date]) -> None:
    write_json(sorted(d.isoformat() for d in days), settings.raw_dir / PENDING_FILE)
