"""Incremental ingest from a real PostgreSQL, in a database of the test's own.

The portal's tables are shaped as a portal's would be (integer ids, its own column names,
an insert time), mapped onto the contract with CHURN_SOURCE_COLUMNS. Every time in the
data is fixed; the run's clock is passed in, so nothing depends on today's date.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pyarrow.parquet as pq
import pytest

from core.settings import Settings
from ingestion import raw_store
from ingestion.postgres_source import SourceError, ingest_postgres, load_state

pytestmark = pytest.mark.integration

NOW = datetime(2026, 2, 1, 3, 0, tzinfo=UTC)
MAPPING = {"event_id": "id", "event_time": "happened_at", "event_type": "kind"}
SCHEMA = """
CREATE TABLE portal_users (user_id bigint PRIMARY KEY, signup_time timestamptz NOT NULL,
                           plan text, country text);
CREATE TABLE portal_events (id bigint PRIMARY KEY, user_id bigint NOT NULL,
                            happened_at timestamptz NOT NULL, kind text NOT NULL,
                            course_id text, watch_minutes numeric, quiz_score real,
                            amount numeric(10, 2),
                            inserted_at timestamptz NOT NULL DEFAULT now());
INSERT INTO portal_users VALUES (1, '2026-01-01 08:00+00', 'free', 'de'),
                                (2, '2026-01-02 09:30+01', 'paid', NULL);
"""


def add_events(url: str, first: int, last: int, day: str, inserted: str) -> None:
    """Events ``first``..``last`` on ``day`` (one a minute), inserted at ``inserted``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO portal_events (id, user_id, happened_at, kind, course_id, "
            "watch_minutes, inserted_at) "
            "SELECT i, 1 + i %% 2, %s::timestamptz + (i - %s::bigint) * INTERVAL '1 minute', "
            "CASE WHEN i %% 2 = 0 THEN 'video_watch' ELSE 'login' END, "
            "CASE WHEN i %% 2 = 0 THEN 'k8s-101' END, CASE WHEN i %% 2 = 0 THEN 12.5 END, "
            "%s::timestamptz FROM generate_series(%s::bigint, %s::bigint) AS i",
            (f"{day} 06:00+00", first, inserted, first, last),
        )


@pytest.fixture
def portal(database: str) -> str:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)
    return database


def settings_for(make_settings, **overrides: object) -> Settings:
    values = {"source_users": "portal_users", "source_events": "portal_events",
              "source_columns": MAPPING, "source_mark_column": "inserted_at"}  # fmt: skip
    return make_settings(**(values | overrides))


def stored(settings: Settings) -> dict[str, dict]:
    events = raw_store.read_events(settings).to_pylist()
    return {e["event_id"]: e for e in events}


def raw_files(settings: Settings) -> dict[str, bytes]:
    return {
        str(p.relative_to(settings.raw_dir)): p.read_bytes()
        for p in sorted(settings.raw_dir.rglob("*"))
        if p.is_file()
    }


def test_first_load_then_incremental_then_a_rerun_that_changes_nothing(portal, make_settings):
    settings = settings_for(make_settings)
    add_events(portal, 1, 300, "2026-01-10", "2026-01-11 01:00+00")

    first = ingest_postgres(settings, portal, now=NOW)

    assert (first.events, first.users, first.already_stored) == (300, 2, 0)
    assert [d.isoformat() for d in sorted(first.days)] == ["2026-01-10"]
    events = stored(settings)
    assert events["2"]["event_type"] == "video_watch" and events["2"]["watch_minutes"] == 12.5
    assert events["2"]["course_id"] == "k8s-101" and events["1"]["quiz_score"] is None
    assert str(events["1"]["event_time"]) == "2026-01-10 06:00:00+00:00"
    users = pq.read_table(raw_store.users_path(settings)).to_pylist()
    assert [(u["user_id"], u["country"]) for u in users] == [("1", "de"), ("2", "unknown")]
    assert str(users[1]["signup_time"]) == "2026-01-02 08:30:00+00:00"  # +01 converted
    mark = load_state(settings)
    assert [v["mark"] for v in mark.values()] == ["2026-01-11T01:00:00+00:00"]

    add_events(portal, 301, 400, "2026-01-11", "2026-01-12 01:00+00")
    second = ingest_postgres(settings, portal, now=NOW)

    assert (second.events, second.users) == (100, 0)
    assert second.already_stored == 300  # the look-back (48 h) re-read them: not stored twice
    assert [d.isoformat() for d in sorted(second.days)] == ["2026-01-11"]
    assert len(stored(settings)) == 400

    before = raw_files(settings)
    third = ingest_postgres(settings, portal, now=NOW)
    assert (third.events, third.users, third.days) == (0, 0, set())
    assert {k: v for k, v in raw_files(settings).items() if k != "source_state.json"} == {
        k: v for k, v in before.items() if k != "source_state.json"
    }


def test_a_late_event_and_a_changed_user_reach_the_raw_tables(portal, make_settings):
    settings = settings_for(make_settings, source_lookback_hours=0)
    add_events(portal, 1, 50, "2026-01-20", "2026-01-21 01:00+00")
    ingest_postgres(settings, portal, now=NOW)

    # Committed a day later, for three days before: the insert-time mark still sees it.
    add_events(portal, 51, 51, "2026-01-18", "2026-01-22 01:00+00")
    with psycopg.connect(portal, autocommit=True) as conn:
        conn.execute("UPDATE portal_users SET plan = 'paid' WHERE user_id = 1")
        conn.execute("INSERT INTO portal_users VALUES (3, '2026-01-21 10:00+00', 'free', 'fr')")
    late = ingest_postgres(settings, portal, now=NOW)

    assert late.events == 1 and [d.isoformat() for d in late.days] == ["2026-01-18"]
    assert late.users == 2  # one changed, one new
    users = {u["user_id"]: u for u in pq.read_table(raw_store.users_path(settings)).to_pylist()}
    assert users["1"]["plan"] == "paid" and users["3"]["country"] == "fr"


def test_an_event_changed_at_the_source_after_ingest_keeps_its_first_version(portal, make_settings):
    settings = settings_for(make_settings, source_mark_column=None)  # marks on happened_at
    add_events(portal, 1, 10, "2026-01-20", "2026-01-20 07:00+00")
    ingest_postgres(settings, portal, now=NOW)
    with psycopg.connect(portal, autocommit=True) as conn:
        conn.execute("UPDATE portal_events SET watch_minutes = 99 WHERE id = 2")

    again = ingest_postgres(settings, portal, now=NOW)

    # Events are immutable once stored: the change is read (within the look-back),
    # counted as already stored, and not applied. A correction is a new event.
    assert again.events == 0 and again.already_stored == 10
    assert stored(settings)["2"]["watch_minutes"] == 12.5

    # A full re-read makes raw equal to the source: the correction lands, and only its
    # day is rewritten and pending for the daily tables.
    raw_store.clear_pending(settings, raw_store.pending_days(settings))
    add_events(portal, 11, 11, "2026-01-25", "2026-01-25 07:00+00")
    other_day = raw_store.events_root(settings) / "date=2026-01-25" / "events.parquet"
    full = ingest_postgres(settings, portal, now=NOW, full=True)
    assert stored(settings)["2"]["watch_minutes"] == 99.0
    assert sorted(d.isoformat() for d in full.days) == ["2026-01-20", "2026-01-25"]
    assert other_day.is_file() and len(stored(settings)) == 11
    before = other_day.stat().st_mtime_ns
    assert ingest_postgres(settings, portal, now=NOW, full=True).days == set()
    assert other_day.stat().st_mtime_ns == before


def test_a_connection_dropped_mid_read_writes_nothing_and_keeps_the_mark(
    portal, make_settings, postgres_url
):
    settings = settings_for(make_settings, source_chunk_rows=1000)
    add_events(portal, 1, 20, "2026-01-05", "2026-01-06 01:00+00")
    ingest_postgres(settings, portal, now=NOW)
    before, mark = raw_files(settings), load_state(settings)
    add_events(portal, 21, 400_000, "2026-01-06", "2026-01-07 01:00+00")
    name = urlsplit(portal).path.lstrip("/")
    dropped = threading.Event()

    def drop_connection(rows: int, _: int) -> None:
        if not dropped.is_set():  # after the first batch: the server ends the session
            dropped.set()
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )

    with pytest.raises(SourceError, match="reading postgresql://") as error:
        ingest_postgres(settings, portal, now=NOW, progress=drop_connection)

    assert dropped.is_set() and "\n" not in str(error.value)
    assert raw_files(settings) == before and load_state(settings) == mark
    assert not (settings.raw_dir / ".staging").exists()
    # The next run reads from the same mark and stores every event once.
    assert ingest_postgres(settings, portal, now=NOW).events == 399_980
    assert len(stored(settings)) == 400_000


def test_wrong_credentials_are_one_clear_line(portal, make_settings):
    settings = settings_for(make_settings)
    url = urlsplit(portal)
    wrong = url._replace(netloc=f"no_such_role_x@{url.hostname}:{url.port or 5432}").geturl()

    with pytest.raises(SourceError) as error:
        ingest_postgres(settings, wrong, now=NOW)

    message = str(error.value)
    assert message.startswith("cannot connect to postgresql://no_such_role_x@")
    assert "no_such_role_x" in message and "\n" not in message
    assert not settings.raw_dir.exists() or not raw_store.event_files(settings)


def test_a_required_column_missing_at_the_source_names_the_mapping(portal, make_settings):
    settings = settings_for(make_settings, source_columns={"event_id": "id"})
    with pytest.raises(SourceError, match="CHURN_SOURCE_COLUMNS=event_time="):
        ingest_postgres(settings, portal, now=NOW)
    assert not raw_store.event_files(settings)


def test_a_password_never_reaches_the_state_or_the_messages(portal, make_settings):
    settings = settings_for(make_settings)
    url = urlsplit(portal)
    with_password = url._replace(netloc=f"root:s3cret-pw@{url.hostname}:{url.port or 5432}")
    add_events(portal, 1, 5, "2026-01-05", "2026-01-06 01:00+00")
    ingest_postgres(settings, with_password.geturl(), now=NOW)  # trust auth ignores it
    assert "s3cret-pw" not in (settings.raw_dir / "source_state.json").read_text()
    assert Path(settings.raw_dir / "source_state.json").is_file()
