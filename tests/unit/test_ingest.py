"""Ingest: CSV/Parquet in, contract-typed raw tables out; bad files fail loudly and change nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from core import contract
from core.contract import contract_schema
from ingestion import raw_store
from ingestion.ingest import (
    IngestError,
    ingest_files,
    read_events,
    read_users,
)
from ingestion.validate import validate_tables
from tests.conftest import settings_under

USERS_CSV = """user_id,signup_time,plan,country,favourite_colour
007,2025-01-01 10:00:00,paid,NA,blue
8,2025-01-01T10:00:00+02:00,,DE,red
9,2025-01-02T00:00:00Z,free,,green
"""
# e2's naive time right after an offset time: pandas' ISO8601 parser alone would put it in +01:00.
EVENTS_CSV = """event_id,user_id,event_time,event_type,watch_minutes
e1,007,2025-01-03T12:00:00+01:00,video_watch,12.5
e2,8,2025-01-03 12:00:00,login,
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def utc(*stamps: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(s, tz="UTC") for s in stamps]


def test_users_csv_is_typed_to_the_contract(tmp_path):
    users = read_users(write(tmp_path / "users.csv", USERS_CSV))

    assert list(users.columns) == list(contract.USER_COLUMNS)
    assert str(users["signup_time"].dtype) == "datetime64[us, UTC]"
    # Naive is taken as UTC; an offset is converted; leading zeros and Namibia survive.
    assert users["signup_time"].tolist() == utc(
        "2025-01-01 10:00", "2025-01-01 08:00", "2025-01-02 00:00"
    )
    assert users["user_id"].tolist() == ["007", "8", "9"]
    assert users["country"].tolist() == ["NA", "DE", contract.UNKNOWN]
    assert users["plan"].tolist() == ["paid", contract.UNKNOWN, "free"]
    assert users["acquisition_channel"].tolist() == [contract.UNKNOWN] * 3


def test_users_parquet_naive_and_zoned_timestamps_become_utc(tmp_path):
    path = tmp_path / "users.parquet"
    pd.DataFrame(
        {
            "user_id": [1, 2],
            "signup_time": pd.to_datetime(["2025-01-01 10:00", "2025-06-01 10:00"]),
        }
    ).to_parquet(path)
    zoned = tmp_path / "zoned.pq"
    pd.DataFrame(
        {
            "user_id": ["a"],
            "signup_time": pd.to_datetime(["2025-06-01 12:00"]).tz_localize("Europe/Berlin"),
        }
    ).to_parquet(zoned)

    users = read_users(path)
    assert users["user_id"].tolist() == ["1", "2"]
    assert users["signup_time"].tolist() == utc("2025-01-01 10:00", "2025-06-01 10:00")
    assert users["plan"].tolist() == [contract.UNKNOWN] * 2
    assert read_users(zoned)["signup_time"].tolist() == utc("2025-06-01 10:00")


def test_events_csv_fills_missing_optional_columns(tmp_path):
    events = read_events(write(tmp_path / "events.csv", EVENTS_CSV))

    assert list(events.columns) == list(contract.EVENT_COLUMNS)
    assert events["event_time"].tolist() == utc("2025-01-03 11:00", "2025-01-03 12:00")
    assert events["watch_minutes"].tolist()[0] == 12.5
    assert np.isnan(events["watch_minutes"].tolist()[1])
    for column in ("quiz_score", "amount"):
        assert events[column].dtype == "float64" and events[column].isna().all()
    assert events["course_id"].isna().all()


def test_events_parquet_coerces_numbers(tmp_path):
    path = tmp_path / "events.parquet"
    pd.DataFrame(
        {
            "event_id": ["e1"],
            "user_id": ["u1"],
            "event_time": pd.to_datetime(["2025-01-03 12:00"], utc=True),
            "event_type": ["quiz_attempt"],
            "course_id": ["c1"],
            "quiz_score": [80],  # an integer column is still a contract double
        }
    ).to_parquet(path)

    events = read_events(path)
    assert events["quiz_score"].dtype == "float64" and events["quiz_score"].tolist() == [80.0]
    assert str(events["event_time"].dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize(
    "reader, text, needles",
    [
        (read_users, "user_id,plan\n1,free\n", ["users.csv", "signup_time"]),
        (
            read_events,
            "event_id,user_id,event_time\ne1,1,2025-01-01\n",
            ["events.csv", "event_type"],
        ),
        (
            read_users,
            "user_id,signup_time\n1,yesterday\n2,2025-01-01\n",
            ["signup_time", "'yesterday'"],
        ),
        (read_events, EVENTS_CSV.replace("12.5", "twelve"), ["watch_minutes", "'twelve'"]),
    ],
    ids=["missing-users-column", "missing-events-column", "bad-timestamp", "bad-number"],
)
def test_bad_input_raises_ingest_error_naming_file_column_and_value(
    tmp_path, reader, text, needles
):
    name = "users.csv" if reader is read_users else "events.csv"
    with pytest.raises(IngestError) as error:
        reader(write(tmp_path / name, text))
    for needle in [name, *needles]:
        assert needle in str(error.value)


def test_unsupported_suffix_is_an_ingest_error(tmp_path):
    with pytest.raises(IngestError, match="unsupported"):
        read_users(write(tmp_path / "users.json", "{}"))


def test_ingest_writes_contract_typed_raw_tables_that_pass_the_schema_gate(tmp_path):
    settings = settings_under(tmp_path)
    landed = ingest_files(
        write(tmp_path / "u.csv", USERS_CSV), write(tmp_path / "e.csv", EVENTS_CSV), settings
    )

    assert (landed.events, landed.users, landed.already_stored) == (2, 3, 0)
    event_files = raw_store.event_files(settings)
    assert [f.parent.name for f in event_files] == ["date=2025-01-03"]
    assert pq.read_schema(raw_store.users_path(settings)).remove_metadata() == contract_schema(
        contract.USER_COLUMNS
    )
    assert pq.read_schema(event_files[0]).remove_metadata() == contract_schema(
        contract.EVENT_COLUMNS
    )
    report = validate_tables(
        pd.read_parquet(raw_store.users_path(settings)),
        raw_store.read_events(settings).to_pandas(),
        now=pd.Timestamp("2025-01-04", tz="UTC"),
        max_event_age_hours=48,
        volume_factor=3,
        previous=None,
    )
    assert report.passed, report.failures


def test_ingesting_the_same_export_again_adds_nothing(tmp_path):
    settings = settings_under(tmp_path)
    files = write(tmp_path / "u.csv", USERS_CSV), write(tmp_path / "e.csv", EVENTS_CSV)
    ingest_files(*files, settings)
    before = raw_files(settings.raw_dir)

    again = ingest_files(*files, settings)

    assert (again.events, again.already_stored, again.users, again.days) == (0, 2, 0, set())
    assert raw_files(settings.raw_dir) == before  # not even rewritten


def test_a_changed_export_rewrites_only_the_days_that_changed(tmp_path):
    settings = settings_under(tmp_path)
    users = write(tmp_path / "u.csv", USERS_CSV)
    two_days = EVENTS_CSV + "e3,007,2025-01-01T08:00:00Z,login,\n"
    ingest_files(users, write(tmp_path / "e.csv", two_days), settings)
    raw_store.clear_pending(settings, raw_store.pending_days(settings))
    day_one = raw_store.events_root(settings) / "date=2025-01-01" / "events.parquet"
    before = day_one.stat().st_mtime_ns

    changed = two_days.replace("12.5", "13.5")
    again = ingest_files(users, write(tmp_path / "e.csv", changed), settings)

    assert [d.isoformat() for d in again.days] == ["2025-01-03"]
    assert [d.isoformat() for d in raw_store.pending_days(settings)] == ["2025-01-03"]
    assert day_one.stat().st_mtime_ns == before


def raw_files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_failed_ingest_leaves_previous_raw_tables_untouched(tmp_path):
    settings = settings_under(tmp_path)
    users_file = write(tmp_path / "u.csv", USERS_CSV)
    ingest_files(users_file, write(tmp_path / "e.csv", EVENTS_CSV), settings)
    before = raw_files(settings.raw_dir)

    # A different, valid users file: it must not be written when the events file is bad.
    write(users_file, USERS_CSV.replace("007", "010"))
    bad_events = write(tmp_path / "bad.csv", EVENTS_CSV.replace("2025-01-03 12:00:00", "soon"))
    with pytest.raises(IngestError, match="event_time"):
        ingest_files(users_file, bad_events, settings)

    assert raw_files(settings.raw_dir) == before


def test_a_second_ingest_while_one_runs_stops_and_changes_nothing(tmp_path):
    settings = settings_under(tmp_path)
    files = write(tmp_path / "u.csv", USERS_CSV), write(tmp_path / "e.csv", EVENTS_CSV)
    with raw_store.staging(settings):  # an ingest in progress
        with pytest.raises(raw_store.IngestRunning, match="another ingest"):
            ingest_files(*files, settings)
        assert not raw_store.event_files(settings)
    assert ingest_files(*files, settings).events == 2


def test_events_without_a_time_are_kept_for_the_gates_but_rebuild_no_day(tmp_path):
    settings = settings_under(tmp_path)
    no_time = EVENTS_CSV + "e3,007,,login,\n"
    landed = ingest_files(
        write(tmp_path / "u.csv", USERS_CSV), write(tmp_path / "e.csv", no_time), settings
    )

    assert landed.events == 3 and [d.isoformat() for d in landed.days] == ["2025-01-03"]
    assert [d.isoformat() for d in raw_store.pending_days(settings)] == ["2025-01-03"]
    assert raw_store.read_events(settings)["event_time"].null_count == 1  # validation's to refuse
