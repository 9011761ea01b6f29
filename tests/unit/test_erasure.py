"""Erasure's pure parts on real files: the keyed hash and its secret, the record, the filter
every ingest applies, the scrubbing of each format, the manifest after an erasure, and the
command's refusal of bad input. The path through Redis, Feast and the API is
``tests/integration/test_erasure.py``."""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import churn.erasure
from batch.export import LATEST_FILE, MANIFEST_FILE, export_list
from churn.cli import app
from churn.erasure import clean_ids, place_of, places, sweep
from core.atomic import write_json, write_parquet, write_text
from core.history import append_record, read_records
from core.scrub import (
    names_any,
    scrub_csv,
    scrub_file,
    scrub_history,
    scrub_json,
    scrub_parquet,
    scrub_value,
)
from core.tables import validated_event_files
from ingestion import raw_store
from ingestion.erasure_record import (
    ErasureRecordError,
    Forgotten,
    ensure_secret,
    id_hash,
    record_erasure,
    record_path,
    secret_path,
)
from ingestion.ingest import ingest_files
from ingestion.validate import after_erasure, manifest_check, run_validation
from tests.unit.test_validate import NOW, clean_tables, contract_tables, land, land_day
from tests.unit.test_validate import make_settings as validate_settings
from training.exposure import fit_window, sample_note

WHEN = datetime(2025, 3, 2, tzinfo=UTC)
KEY = bytes(range(32))


@pytest.fixture
def settings(tmp_path):
    return validate_settings(tmp_path)


# The keyed hash and the installation's secret.
def test_the_hash_is_keyed_stable_and_does_not_show_the_id():
    digest = id_hash("u1", KEY)
    assert digest == id_hash("u1", KEY) and len(digest) == 64 and "u1" not in digest
    assert digest != id_hash("u1", bytes(32)), "another installation's key gives another hash"
    assert digest != id_hash("u10", KEY)


def test_the_secret_is_made_once_readable_by_its_owner_only(settings):
    key = ensure_secret(settings)
    path = secret_path(settings)
    assert len(key) == 32 and ensure_secret(settings) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary left"


# The record.
def test_the_record_holds_keyed_hashes_when_and_where_never_the_ids(settings):
    assert Forgotten.load(settings) is None, "nobody forgotten: no filter, no cost"
    removed = {"raw events": {"files": 2, "rows": 7}}
    record_erasure(settings, ["u1", "u2", "u1"], WHEN, removed, online_keys=2)

    (line,) = read_records(record_path(settings))
    key = ensure_secret(settings)
    assert line["users"] == sorted({id_hash("u1", key), id_hash("u2", key)})
    assert line["forgotten_at"] == WHEN.isoformat() and line["removed"] == removed
    text = record_path(settings).read_text()
    assert '"u1"' not in text and '"u2"' not in text
    forgotten = Forgotten.load(settings)
    assert forgotten is not None and forgotten.hashes == frozenset(line["users"])


def test_a_record_without_its_secret_stops_the_ingest(settings):
    record_erasure(settings, ["u1"], WHEN, {})
    secret_path(settings).unlink()
    with pytest.raises(ErasureRecordError, match=r"secret\.key is missing"):
        Forgotten.load(settings)
    users, events = contract_tables(*clean_tables())
    with pytest.raises(ErasureRecordError):
        raw_store.replace_all(settings, users, [events])


def test_the_filter_drops_the_forgotten_rows_and_keeps_nulls():
    forgotten = Forgotten(KEY, frozenset({id_hash("u2", KEY)}))
    table = pa.table({"user_id": ["u1", "u2", None, "u2", "u20"], "n": [1, 2, 3, 4, 5]})
    kept, dropped = forgotten.drop(table)
    assert dropped == 2 and kept["n"].to_pylist() == [1, 3, 5]
    assert forgotten.among(table["user_id"]) == ["u2"]


# Every way in drops a forgotten learner's rows, and counts them.
def raw_users(settings) -> list[str]:
    return sorted(pq.read_table(raw_store.users_path(settings))["user_id"].to_pylist())


def raw_event_users(settings) -> set[str]:
    return set(raw_store.read_events(settings)["user_id"].to_pylist())


def test_a_full_export_does_not_bring_a_forgotten_learner_back(settings):
    users, events = contract_tables(*clean_tables())
    record_erasure(settings, ["u2"], WHEN, {})
    landed = raw_store.replace_all(settings, users, [events])
    assert (landed.forgotten_events, landed.forgotten_users) == (4, 1)
    assert landed.to_dict()["forgotten_events"] == 4
    assert raw_users(settings) == ["u1", "u3", "u4"] and "u2" not in raw_event_users(settings)


def test_an_incremental_ingest_and_an_upsert_leave_them_out(settings):
    users, events = clean_tables()
    land(settings, users[users.user_id != "u2"], events[events.user_id != "u2"])
    record_erasure(settings, ["u2"], WHEN, {})
    users_table, events_table = contract_tables(users, events)
    with raw_store.staging(settings) as staged:
        staged.add(events_table)
        landed = raw_store.merge(settings, staged)
    landed.add(raw_store.upsert_users(settings, users_table))
    assert (landed.events, landed.forgotten_events, landed.forgotten_users) == (0, 4, 1)
    assert raw_users(settings) == ["u1", "u3", "u4"] and "u2" not in raw_event_users(settings)


def test_ingested_files_leave_them_out(settings, tmp_path):
    users, events = clean_tables()
    users.to_csv(tmp_path / "users.csv", index=False)
    events.to_csv(tmp_path / "events.csv", index=False)
    record_erasure(settings, ["u3"], WHEN, {})
    landed = ingest_files(tmp_path / "users.csv", tmp_path / "events.csv", settings)
    assert (landed.forgotten_events, landed.forgotten_users) == (3, 1)
    assert "u3" not in raw_users(settings)


# Scrubbing, format by format.
def test_parquet_loses_the_rows_and_keeps_its_schema_and_row_groups(tmp_path):
    path = tmp_path / "t.parquet"
    table = pa.table({"user_id": ["u1", "u2", "u10", "u2"] * 3, "x": list(range(12))})
    pq.write_table(table, path, row_group_size=4)
    assert scrub_parquet(path, frozenset({"u2"}), "user_id") == 6
    out = pq.ParquetFile(path)
    assert out.schema_arrow == table.schema and out.metadata.row_group(0).num_rows == 4
    assert out.read()["user_id"].to_pylist() == ["u1", "u10"] * 3


def test_parquet_that_cannot_hold_the_id_is_not_rewritten(tmp_path):
    path = tmp_path / "t.parquet"
    write_parquet(pa.table({"user_id": ["a1", "a2"], "x": [1, 2]}), path)
    before = path.stat().st_ino, path.stat().st_mtime_ns
    assert scrub_parquet(path, frozenset({"u2"}), "user_id") == 0  # statistics rule it out
    assert scrub_parquet(path, frozenset({"a15"}), "user_id") == 0  # in range, not there
    assert scrub_parquet(path, frozenset({"a1"}), "no_such_column") == 0
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == before


def test_csv_loses_the_rows_naming_the_id_and_keeps_its_header(tmp_path):
    path = write_text("user_id,risk\nu1,0.9\nu2,0.8\nu10,0.7\n", tmp_path / "high_risk.csv")
    assert scrub_csv(path, frozenset({"u1"})) == 1
    assert path.read_text() == "user_id,risk\nu2,0.8\nu10,0.7\n"


def test_json_loses_ids_examples_and_keyed_entries_and_keeps_the_rest(tmp_path):
    report = {
        "scored": 3,
        "skipped_examples": ["u1", "u2"],
        "failures": [{"rule": "x", "examples": [{"user_id": "u1", "day": "d"}, {"user_id": "u3"}]}],
        "by_user": {"u1": 0.4, "u3": 0.1},
        "note": "u1 is not a whole value here",
    }
    path = write_json(report, tmp_path / "run.json")
    assert scrub_json(path, frozenset({"u1"})) == 3
    assert json.loads(path.read_text()) == {
        "scored": 3,
        "skipped_examples": ["u2"],
        "failures": [{"rule": "x", "examples": [{"user_id": "u3"}]}],
        "by_user": {"u3": 0.1},
        "note": "u1 is not a whole value here",
    }


def test_scrub_value_leaves_its_input_alone():
    value = {"a": ["u1", {"b": "u1"}]}
    assert scrub_value(value, frozenset({"u1"})) == ({"a": []}, 2)
    assert value == {"a": ["u1", {"b": "u1"}]}


def test_a_history_loses_the_lines_naming_the_id_under_its_lock(tmp_path):
    path = tmp_path / "history.jsonl"
    for record in ({"user_id": "u1", "n": 1}, {"n": 2, "missing": ["u1", "u2"]}, {"n": 3}):
        append_record(path, record)
    assert scrub_history(path, frozenset({"u1"})) == 2
    assert read_records(path) == [{"n": 2, "missing": ["u2"]}, {"n": 3}]


def test_whole_ids_only_in_bytes(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\x00\x01u10\x02")
    assert not names_any(path, frozenset({"u1"}))
    assert names_any(path, frozenset({"u10"}))


# The sweep and the validated manifest.
def erasable(settings):
    """A validated world of four users, with a report and a list that name them."""
    users, events = clean_tables()
    land(settings, users, events)
    assert run_validation(settings, now=NOW).passed
    write_text("user_id,risk\nu1,0.9\nu2,0.8\n", settings.data_dir / "predictions" / "x.csv")
    write_json({"missing_examples": ["u2"]}, settings.monitoring_dir / "skew" / "s.json")


def names_u2(settings) -> list[str]:
    """Files that still hold u2: Parquet by their user_id column, the others by their bytes."""
    found = []
    for root in (settings.data_dir, settings.artifacts_dir):
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.suffix == ".parquet":
                if "u2" in pq.ParquetFile(path).read(columns=["user_id"])["user_id"].to_pylist():
                    found.append(path)
            elif names_any(path, frozenset({"u2"})):
                found.append(path)
    return found


def test_a_sweep_leaves_nothing_that_names_the_learner(settings):
    erasable(settings)
    swept = sweep(settings, frozenset({"u2"}))
    assert names_u2(settings) == [] and swept.left == []
    assert swept.removed["raw events"].rows == 4 and swept.removed["raw users"].rows == 1
    assert swept.removed["validated events"].rows == 4
    assert swept.removed["predictions"].rows == 1 and swept.removed["monitoring"].rows == 1
    assert pq.read_table(settings.validated_users_path).num_rows == 3


def test_a_sweep_scrubs_the_exported_lists_and_rewrites_their_manifest(settings, tmp_path):
    """The export dir (outside the data dir, as a mounted volume is) loses the learner from
    every dated list and the latest one, and its manifest describes the latest list again."""
    settings = settings.model_copy(update={"export_dir": tmp_path / "outbox"})
    erasable(settings)
    for day, users in ((1, ["u1", "u2", "u3"]), (2, ["u2", "u4"])):
        rows = "".join(f"{i},{u}\n" for i, u in enumerate(users, 1))
        listed = write_text("rank,user_id\n" + rows, tmp_path / f"high_risk_{day}.csv")
        export_list(listed, settings.export_dir, WHEN.replace(day=day), "v1", keep_nights=30)

    swept = sweep(settings, frozenset({"u2"}))

    outbox = sorted(settings.export_dir.iterdir())
    assert [p.name for p in outbox] == ["high_risk_2025-03-01.csv", "high_risk_2025-03-02.csv",
                                        LATEST_FILE, MANIFEST_FILE]  # fmt: skip
    assert not [p for p in outbox if names_any(p, frozenset({"u2"}))]
    assert swept.removed["exported lists"].files == 3 and swept.removed["exported lists"].rows == 3
    assert (settings.export_dir / LATEST_FILE).read_text() == "rank,user_id\n2,u4\n"
    manifest = json.loads((settings.export_dir / MANIFEST_FILE).read_text())
    assert (manifest["date"], manifest["rows"]) == ("2025-03-02", 1)
    latest = (settings.export_dir / LATEST_FILE).read_bytes()
    assert manifest["sha256"] == hashlib.sha256(latest).hexdigest()
    assert place_of(settings.export_dir / LATEST_FILE, places(settings), []) == "exported lists"


def test_after_an_erasure_the_next_validation_reads_nothing_again(settings):
    erasable(settings)
    before = manifest_check(settings)
    after_erasure(settings, before, sweep(settings, frozenset({"u2"})).rewritten)
    manifest = json.loads((settings.validated_dir / "manifest.json").read_text())
    assert manifest["events"] == 8 and manifest["users"] == 3

    report = run_validation(settings, now=NOW)
    assert report.passed, report.failures
    assert report.stats["days"]["validated"] == [] and not report.stats["days"]["users_checked"]
    assert sum(pq.read_metadata(f).num_rows for f in validated_event_files(settings)) == 8


def test_a_late_day_not_yet_validated_is_still_validated_after_an_erasure(settings):
    users, events = clean_tables()
    late = events.event_id == "e04"  # u1's payment of 2025-02-28
    land(settings, users, events[~late])
    assert run_validation(settings, now=NOW).passed
    land_day(settings, "2025-02-28", events[late])  # arrives late: raw changed, not validated

    before = manifest_check(settings)
    assert date(2025, 2, 28) not in before.days
    after_erasure(settings, before, sweep(settings, frozenset({"u2"})).rewritten)
    report = run_validation(settings, now=NOW)
    assert report.passed and report.stats["days"]["validated"] == ["2025-02-28"]
    assert "e04" in pq.read_table(validated_event_files(settings)[-2])["event_id"].to_pylist()


def test_places_name_the_stores_and_anything_else_by_its_folder(settings):
    known, roots = places(settings), [settings.data_dir, settings.artifacts_dir]
    day = raw_store.events_root(settings) / "date=2025-01-01" / "events.parquet"
    assert place_of(day, known, roots) == "raw events"
    assert place_of(settings.models_dir / "v1" / "validation.parquet", known, roots) == (
        "model validation rows"
    )
    assert place_of(settings.data_dir / "mine" / "x.json", known, roots) == "other: mine"


# Which versions saw them: from their metadata.
def test_the_fit_window_runs_a_lookback_before_the_first_fit_time_to_the_last():
    metadata = {
        "active_lookback_days": 14,
        "split": {
            "fit": ["2025-02-01 00:00:00+00:00", "2025-02-20 00:00:00+00:00"],
            "calibration": ["2025-02-21 00:00:00+00:00", "2025-02-24 00:00:00+00:00"],
            "validation": ["2025-03-27 00:00:00+00:00", "2025-04-02 00:00:00+00:00"],
        },
    }
    # Active on 2025-01-18 puts a user in the population at T = 2025-02-01; active on
    # 2025-02-23 at T = 2025-02-24; active on 2025-02-24 is after every fit time.
    assert fit_window(metadata) == (date(2025, 1, 18), date(2025, 2, 24))
    assert fit_window({}) is None


def test_a_sampled_fit_says_the_learner_may_not_have_been_drawn():
    assert sample_note({"sample": {"users": 2000, "users_total": 3400}}) == (
        "fit on a sample of 2,000 of 3,400 users"
    )
    assert sample_note({"sample": {"users": 300, "users_total": 300}}) is None


# The command's input.
def test_ids_are_stripped_and_kept_once():
    assert clean_ids([" u1", "u2", "u1 "]) == ["u1", "u2"]
    with pytest.raises(ValueError, match="no user id given"):
        clean_ids([])
    with pytest.raises(ValueError, match="blank"):
        clean_ids(["u1", "  "])


@pytest.mark.parametrize("args", [[], ["--ids-file", "EMPTY"]])
def test_forget_without_ids_is_one_line_and_exits_non_zero(args, tmp_path):
    empty = tmp_path / "ids.txt"
    empty.write_text("\n")
    env = {"CHURN_DATA_DIR": str(tmp_path / "data"), "CHURN_ARTIFACTS_DIR": str(tmp_path / "a")}
    result = CliRunner().invoke(
        app, ["forget", *[str(empty) if a == "EMPTY" else a for a in args]], env=env
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "ValueError: no user id given: churn forget USER_ID… (or --ids-file FILE)"
    ]
    assert not (tmp_path / "data").exists(), "nothing written, nothing recorded"


def test_pandas_frames_read_back_without_the_forgotten(settings):
    """The daily tables are read by pandas as well: a scrubbed partition reads as before."""
    path = settings.user_daily_path / "date=2025-02-01" / "data_0.parquet"
    write_parquet(pd.DataFrame({"user_id": ["u1", "u2"], "active": [1, 0]}), path)
    sweep(settings, frozenset({"u2"}))
    assert pd.read_parquet(path).to_dict("list") == {"user_id": ["u1"], "active": [1]}


def test_an_erasure_that_fails_half_way_is_recorded_all_the_same(settings, monkeypatch):
    erasable(settings)
    calls = 0

    def disk_full_on_the_third_file(*args: object) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("No space left on device")
        return scrub_file(*args)

    monkeypatch.setattr(churn.erasure, "scrub_file", disk_full_on_the_third_file)
    with pytest.raises(OSError, match="No space left"):
        churn.erasure.forget(settings, ["u2"], now=WHEN)

    (line,) = read_records(record_path(settings))
    assert line["failed"] == "OSError: No space left on device" and len(line["users"]) == 1
    assert Forgotten.load(settings).among(pa.array(["u1", "u2"])) == ["u2"]
