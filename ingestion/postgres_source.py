"""Incremental ingest from the portal's PostgreSQL: users upserted, events past a mark.

Read with Apache Arrow's ADBC driver, in Arrow batches (memory is a batch's, not the
table's): against psycopg 3's ``COPY … TO STDOUT`` parsed by Arrow's CSV reader it read
6 M events 2.2× faster at a lower peak (``benchmarks/pg_readers.py``), and it hands over
typed columns (timestamps with their zone, numbers) instead of text.

Each run reads the events whose mark column is at or after the stored high-water mark
minus ``CHURN_SOURCE_LOOKBACK_HOURS`` (rows committed late), ordered by it. The mark is
stored beside the raw tables (``raw/source_state.json``) and moved only after every row
read is in the raw tables, so a run that fails anywhere, a dropped connection included,
re-reads the same rows next time; the raw store keeps each ``event_id`` once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core import contract
from core.atomic import write_json
from core.settings import Settings
from ingestion import raw_store
from ingestion.ingest import IngestError, SourceError, type_events, type_users

STATE_FILE = "source_state.json"
MARK = "__mark"
_QUERY = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


@dataclass(frozen=True)
class PostgresSource:
    """Where and how to read: the URL (with any password), the two relations, the mapping."""

    url: str
    users: str
    events: str
    columns: dict[str, str]
    mark_column: str | None
    lookback: timedelta
    chunk_rows: int

    @classmethod
    def from_settings(cls, settings: Settings, url: str) -> PostgresSource:
        return cls(url, settings.source_users, settings.source_events,
                   dict(settings.source_columns), settings.source_mark_column,
                   timedelta(hours=settings.source_lookback_hours),
                   settings.source_chunk_rows)  # fmt: skip

    @property
    def name(self) -> str:
        """The URL without its password, and the events relation: for messages and the state."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        user = f"{parts.username}@" if parts.username else ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{user}{host}{port}{parts.path} ({self.events})"

    def mark_source_column(self) -> str:
        return self.mark_column or self.columns.get("event_time", "event_time")


def relation(text: str) -> str:
    """A table name (``schema.table`` allowed) or a SELECT, as something to select from."""
    if _QUERY.match(text):
        return f"({text}) AS source"
    if not _IDENTIFIER.match(text):
        raise SourceError(f"{text!r} is neither a table name nor a SELECT")
    return ".".join(f'"{part}"' for part in text.split(".")) + " AS source"


def select_list(found: list[str], wanted: dict[str, str], mapping: dict[str, str],
                optional: tuple[str, ...], what: str) -> list[str]:  # fmt: skip
    """``source."col" AS contract_col`` for each contract column; an absent optional one is
    NULL; an absent required one is a SourceError naming it and what the source has."""
    items = []
    for column, kind in wanted.items():
        name = mapping.get(column, column)
        if name in found:
            items.append(f'source."{name}" AS "{column}"')
        elif column in optional:
            sql_type = "double precision" if kind == "double" else "text"
            items.append(f'NULL::{sql_type} AS "{column}"')
        else:
            raise SourceError(
                f"{what} has no column {name!r} for {column} (it has {', '.join(found)}); "
                f"map one with CHURN_SOURCE_COLUMNS={column}=<its column>"
            )
    return items


def _connect(source: PostgresSource):
    import adbc_driver_postgresql.dbapi as adbc

    try:
        return adbc.connect(source.url)
    except Exception as exc:  # the driver's errors carry libpq's message
        raise SourceError(f"cannot connect to {source.name}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").strip()
    fatal = re.search(r"(FATAL|ERROR):\s*(.*)", text)
    return (fatal.group(2) if fatal else text)[:300]


def _columns(cursor, relation_sql: str) -> list[str]:
    cursor.execute(f"SELECT * FROM {relation_sql} LIMIT 0")
    return [d[0] for d in cursor.description]


def _batches(cursor, sql: str, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    cursor.adbc_statement.set_options(
        **{"adbc.postgresql.batch_size_hint_bytes": str(chunk_rows * 100)}
    )
    cursor.execute(sql)
    yield from cursor.fetch_record_batch()


def read_users(cursor, source: PostgresSource) -> pa.Table:
    """Every user of the source, in contract types (users are few: read whole each run)."""
    rel = relation(source.users)
    items = select_list(_columns(cursor, rel), contract.USER_COLUMNS, source.columns,
                        contract.OPTIONAL_USER_COLUMNS, f"users {source.users!r}")  # fmt: skip
    cursor.execute(f"SELECT {', '.join(items)} FROM {rel}")
    frame = cursor.fetch_arrow_table().to_pandas(types_mapper=_strings)
    return contract.to_contract_table(type_users(frame, source.name), contract.USER_COLUMNS)


def events_sql(source: PostgresSource, found: list[str], since: datetime | None) -> str:
    """The events past ``since`` (all without it), ordered by the mark column."""
    items = select_list(found, contract.EVENT_COLUMNS, source.columns,
                        contract.OPTIONAL_EVENT_COLUMNS, f"events {source.events!r}")  # fmt: skip
    mark = source.mark_source_column()
    if mark not in found:
        raise SourceError(f"events {source.events!r} has no mark column {mark!r} "
                          f"(it has {', '.join(found)}): set CHURN_SOURCE_MARK_COLUMN")  # fmt: skip
    where = f"WHERE source.\"{mark}\" >= TIMESTAMPTZ '{since.isoformat()}'" if since else ""
    return (f'SELECT {", ".join(items)}, source."{mark}" AS "{MARK}" '
            f'FROM {relation(source.events)} {where} ORDER BY source."{mark}"')  # fmt: skip


def _strings(arrow_type: pa.DataType) -> object:
    if arrow_type in (pa.string(), pa.large_string()):
        return pd.StringDtype("pyarrow")
    return None


def _batch_events(batch: pa.RecordBatch, source: PostgresSource) -> tuple[pa.Table, object]:
    """A batch as contract-typed events, and the batch's newest mark value."""
    frame = batch.to_pandas(types_mapper=_strings)
    newest = pc.max(batch.column(MARK)).as_py()
    events = type_events(frame.drop(columns=[MARK]), source.name)
    return contract.to_contract_table(events, contract.EVENT_COLUMNS), newest


def load_state(settings: Settings) -> dict:
    path = settings.raw_dir / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def ingest_postgres(
    settings: Settings,
    url: str,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    full: bool = False,
) -> raw_store.Landed:
    """One incremental run: users upserted, the events past the mark added, the mark moved.

    ``full`` reads the whole source and makes the raw tables equal to it: the way to take
    corrections made at the source to events already stored (which an incremental run
    keeps as first stored); only the days that differ are rewritten and rebuilt.
    """
    source = PostgresSource.from_settings(settings, url)
    state = load_state(settings).get(source.name, {})
    mark = datetime.fromisoformat(state["mark"]) if state.get("mark") and not full else None
    since = mark - source.lookback if mark else None
    newest = mark
    with raw_store.staging(settings) as staged, _connect(source) as conn, conn.cursor() as cur:
        try:
            users = read_users(cur, source)
            sql = events_sql(source, _columns(cur, relation(source.events)), since)
            for batch in _batches(cur, sql, source.chunk_rows):
                events, batch_newest = _batch_events(batch, source)
                staged.add(events)
                newest = _later(newest, batch_newest)
                if progress:
                    progress(staged.rows, 0)
        except (SourceError, IngestError):
            raise
        except Exception as exc:  # the driver's: a dropped connection, a bad query
            raise SourceError(f"reading {source.name} failed: {_first_line(exc)}") from exc
        if full:
            landed = raw_store.replace_with(settings, users, staged)
        else:
            landed = raw_store.merge(settings, staged)
    if not full:
        landed.add(raw_store.upsert_users(settings, users))
    _save_mark(settings, source, newest, landed, now or datetime.now(UTC))
    return landed


def _later(mark: datetime | None, value: object) -> datetime | None:
    if value is None:
        return mark
    stamp = pd.Timestamp(value)
    when = (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).to_pydatetime()
    return when if mark is None or when > mark else mark


def _save_mark(settings: Settings, source: PostgresSource, mark: datetime | None,
               landed: raw_store.Landed, now: datetime) -> None:  # fmt: skip
    """Move the mark: the last write of a run, after every row read is stored."""
    state = load_state(settings)
    state[source.name] = {
        "mark": mark.isoformat() if mark else None,
        "updated_at": now.isoformat(),
        "last_run": landed.to_dict(),
    }
    write_json(state, settings.raw_dir / STATE_FILE)


def state_path(settings: Settings) -> Path:
    return settings.raw_dir / STATE_FILE


def seed_portal(
    settings: Settings,
    url: str,
    users: pa.Table,
    events: pa.Table | Iterable[pa.Table],
    chunk_rows: int = 500_000,
) -> bool:
    """Create the source's users and events tables holding ``users`` and ``events``, as a
    portal's would be: the demo's ``portal-db`` and the benchmarks seed with this. False,
    and nothing written (nor ``events`` read), when the users table exists already (a
    seeded database). ``events`` may come in tables (a generator's days), one transaction.

    Tables only (not queries), in contract column names, plus ``inserted_at`` (each event's
    own time, as if written when it happened): a mark column as a portal's insert time.
    """
    for name in (settings.source_users, settings.source_events):
        if not _IDENTIFIER.match(name):
            raise SourceError(f"seeding needs table names, got {name!r}")
    conn = _connect(PostgresSource.from_settings(settings, url))
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT to_regclass({_literal(settings.source_users)}) IS NOT NULL")
        if cur.fetchone()[0]:
            return False
        cur.adbc_ingest(settings.source_users, users, mode="create")
        for table in [events] if isinstance(events, pa.Table) else events:
            for start in range(0, max(table.num_rows, 1), chunk_rows):
                chunk = table.slice(start, chunk_rows)
                chunk = chunk.append_column("inserted_at", chunk["event_time"])
                cur.adbc_ingest(settings.source_events, chunk, mode="create_append")
        conn.commit()
    return True


def append_events(settings: Settings, url: str, events: pa.Table, inserted_at: datetime) -> None:
    """Append contract events to a seeded source's events table, inserted at ``inserted_at``
    (events committed late, as a portal's would be): the benchmarks and tests use it."""
    stamp = pa.scalar(inserted_at, pa.timestamp("us", tz="UTC"))
    conn = _connect(PostgresSource.from_settings(settings, url))
    with conn, conn.cursor() as cur:
        table = events.append_column("inserted_at", pa.repeat(stamp, events.num_rows))
        cur.adbc_ingest(settings.source_events, table, mode="append")
        conn.commit()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
