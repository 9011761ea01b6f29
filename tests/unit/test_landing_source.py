"""Landing folder: each new users/events export taken once, bad ones quarantined, the rest on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.history import read_records
from core.settings import Settings
from ingestion import landing_source, raw_store
from ingestion.landing_source import ingest_landing, manifest_path, pending_files
from tests.conftest import settings_under
from tests.unit.test_ingest import EVENTS_CSV, USERS_CSV, write

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
NEXT_DAY_CSV = """event_id,user_id,event_time,event_type,watch_minutes
e3,9,2025-01-04T08:00:00Z,login,
"""
BAD_TIME_CSV = """event_id,user_id,event_time,event_type
e9,8,yesterday,login
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_under(tmp_path)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    write(folder / "users_2025-01-03.csv", USERS_CSV)
    write(folder / "events_2025-01-03.csv", EVENTS_CSV)
    return folder


def stored_event_ids(settings: Settings) -> list[str]:
    return sorted(raw_store.read_events(settings)["event_id"].to_pylist())


def manifest(settings: Settings) -> list[dict]:
    return read_records(manifest_path(settings))


def test_first_run_takes_users_and_events_into_the_raw_tables(settings, landing):
    landed = ingest_landing(settings, landing, now=NOW)

    assert (landed.events, landed.users) == (2, 3)
    assert stored_event_ids(settings) == ["e1", "e2"]
    assert sorted(pq.read_table(raw_store.users_path(settings))["user_id"].to_pylist()) == [
        "007",
        "8",
        "9",
    ]
    lines = manifest(settings)
    assert [(r["name"], r["outcome"], r["rows"]) for r in lines] == [
        ("users_2025-01-03.csv", "ingested", 3),
        ("events_2025-01-03.csv", "ingested", 2),
    ]
    assert lines[0]["size"] == len(USERS_CSV.encode())
    assert len(lines[0]["sha256"]) == 64
    assert lines[0]["taken_at"] == NOW.isoformat()
    # Taken files stay where they were.
    assert sorted(p.name for p in landing.iterdir()) == [
        "events_2025-01-03.csv",
        "users_2025-01-03.csv",
    ]


def test_a_second_run_without_new_files_adds_nothing(settings, landing, caplog):
    ingest_landing(settings, landing, now=NOW)
    before = manifest_path(settings).read_bytes()

    with caplog.at_level("INFO", logger=landing_source.__name__):
        landed = ingest_landing(settings, landing, now=NOW)

    assert (landed.events, landed.already_stored, landed.users) == (0, 0, 0)
    assert manifest_path(settings).read_bytes() == before
    assert "no new files" in caplog.text


def test_the_next_days_file_is_taken_and_the_old_one_not_read_again(settings, landing, monkeypatch):
    ingest_landing(settings, landing, now=NOW)
    write(landing / "events_2025-01-04.csv", NEXT_DAY_CSV)
    read = []
    real = landing_source.read_events
    monkeypatch.setattr(landing_source, "read_events", lambda p: read.append(p.name) or real(p))

    landed = ingest_landing(settings, landing, now=NOW)

    assert read == ["events_2025-01-04.csv"]
    assert (landed.events, landed.already_stored, landed.users) == (1, 0, 0)
    assert stored_event_ids(settings) == ["e1", "e2", "e3"]
    assert len(manifest(settings)) == 3


def test_a_re_export_under_the_same_name_is_taken_without_duplicating_events(settings, landing):
    ingest_landing(settings, landing, now=NOW)
    write(landing / "events_2025-01-03.csv", EVENTS_CSV + NEXT_DAY_CSV.splitlines()[1] + "\n")

    landed = ingest_landing(settings, landing, now=NOW)

    assert (landed.events, landed.already_stored) == (1, 2)
    assert stored_event_ids(settings) == ["e1", "e2", "e3"]
    names = [r["name"] for r in manifest(settings)]
    assert names.count("events_2025-01-03.csv") == 2


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("events_2025-01-02.csv", BAD_TIME_CSV, "unparseable timestamp"),
        ("users_2025-01-02.csv", "user_id,plan\n1,free\n", "missing required column"),
        ("events_2025-01-02.parquet", "not parquet at all", "cannot read file"),
    ],
)
def test_a_bad_file_is_quarantined_with_its_report_and_the_rest_land(
    settings, landing, name, text, needle
):
    write(landing / name, text)

    landed = ingest_landing(settings, landing, now=NOW)

    assert (landed.events, landed.users) == (2, 3)
    assert not (landing / name).exists()
    assert (landing / "quarantine" / name).read_text() == text
    report = json.loads((landing / "quarantine" / f"{name}.report.json").read_text())
    assert report["file"] == name
    assert needle in report["error"] and name in report["error"]
    assert report["quarantined_at"] == NOW.isoformat()
    outcomes = {r["name"]: r["outcome"] for r in manifest(settings)}
    assert outcomes == {
        name: "quarantined",
        "users_2025-01-03.csv": "ingested",
        "events_2025-01-03.csv": "ingested",
    }
    bad = next(r for r in manifest(settings) if r["outcome"] == "quarantined")
    assert needle in bad["reason"] and bad["moved_to"] == f"quarantine/{name}"


def test_the_same_bad_content_is_not_retried_and_a_corrected_file_is_taken(settings, landing):
    bad = landing / "events_2025-01-04.csv"
    write(bad, BAD_TIME_CSV)
    ingest_landing(settings, landing, now=NOW)
    write(bad, BAD_TIME_CSV)  # uploaded again, unchanged

    landed = ingest_landing(settings, landing, now=NOW)

    assert landed.events == 0 and bad.read_text() == BAD_TIME_CSV  # skipped, left in place
    assert len(manifest(settings)) == 3

    write(bad, BAD_TIME_CSV.replace("yesterday", "also-not-a-time"))
    ingest_landing(settings, landing, now=NOW)
    # A second quarantine of the same name does not overwrite the first.
    assert sorted(p.name for p in (landing / "quarantine").iterdir()) == [
        "events_2025-01-04.1.csv",
        "events_2025-01-04.1.csv.report.json",
        "events_2025-01-04.csv",
        "events_2025-01-04.csv.report.json",
    ]

    write(bad, NEXT_DAY_CSV)
    landed = ingest_landing(settings, landing, now=NOW)

    assert landed.events == 1 and bad.exists()
    outcomes = [r["outcome"] for r in manifest(settings) if r["name"] == bad.name]
    assert outcomes == ["quarantined", "quarantined", "ingested"]


def test_other_names_are_left_untouched(settings, tmp_path):
    folder = tmp_path / "landing"
    folder.mkdir()
    ignored = {
        "notes.txt": "hello",
        ".hidden.csv": BAD_TIME_CSV,
        "events.csv.tmp": BAD_TIME_CSV,
        ".events_2025-01-05.csv.part": BAD_TIME_CSV,
        "users.json": "{}",
        "orders_2025-01-03.csv": EVENTS_CSV,
        "events_empty.csv": "",
    }
    for name, text in ignored.items():
        write(folder / name, text)
    (folder / "events_dir.csv").mkdir()
    write(folder / "events_dir.csv" / "events.csv", BAD_TIME_CSV)

    landed = ingest_landing(settings, folder, now=NOW)

    assert (landed.events, landed.users) == (0, 0)
    assert {p.name: p.read_text() for p in folder.iterdir() if p.is_file()} == ignored
    assert not (folder / "quarantine").exists()
    assert manifest(settings) == []


def test_users_come_before_events_and_each_kind_in_name_order(tmp_path):
    for name in ["events_2.pq", "users_b.csv", "events_1.csv", "Users_a.parquet", "events_10.csv"]:
        write(tmp_path / name, "x")

    names = [f.path.name for f in pending_files(tmp_path, [])]

    assert names == [
        "Users_a.parquet",
        "users_b.csv",
        "events_1.csv",
        "events_10.csv",
        "events_2.pq",
    ]


def test_parquet_exports_are_taken(settings, tmp_path):
    folder = tmp_path / "landing"
    folder.mkdir()
    pd.DataFrame(
        {
            "event_id": ["p1"],
            "user_id": [7],
            "event_time": pd.to_datetime(["2025-01-05 10:00"]),
            "event_type": ["login"],
        }
    ).to_parquet(folder / "events_2025-01-05.pq")

    landed = ingest_landing(settings, folder, now=NOW)

    assert landed.events == 1 and stored_event_ids(settings) == ["p1"]


def test_a_crash_before_the_manifest_write_takes_the_files_again(settings, landing, monkeypatch):
    def crash(*args: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(raw_store, "upsert_users", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest_landing(settings, landing, now=NOW)
    assert manifest(settings) == []
    monkeypatch.undo()

    landed = ingest_landing(settings, landing, now=NOW)

    assert (landed.events, landed.already_stored, landed.users) == (0, 2, 3)
    assert stored_event_ids(settings) == ["e1", "e2"]
    assert [r["outcome"] for r in manifest(settings)] == ["ingested", "ingested"]


def test_a_file_written_during_its_read_is_left_for_the_next_run(settings, landing, monkeypatch):
    real = landing_source.read_events

    def still_uploading(path: Path) -> pd.DataFrame:
        frame = real(path)
        with path.open("a") as handle:
            handle.write(NEXT_DAY_CSV.splitlines()[1] + "\n")
        return frame

    monkeypatch.setattr(landing_source, "read_events", still_uploading)
    landed = ingest_landing(settings, landing, now=NOW)

    assert (landed.events, landed.users) == (0, 3)
    assert [r["name"] for r in manifest(settings)] == ["users_2025-01-03.csv"]
    assert not (landing / "quarantine").exists()
    monkeypatch.undo()

    assert ingest_landing(settings, landing, now=NOW).events == 3


def test_progress_follows_the_files(settings, landing):
    calls = []

    ingest_landing(
        settings, landing, now=NOW, progress=lambda done, total: calls.append((done, total))
    )

    assert calls == [(1, 2), (2, 2)]


def test_a_missing_folder_is_one_clear_error(settings, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"landing folder .*nowhere does not exist"):
        ingest_landing(settings, tmp_path / "nowhere")
