"""Validation gates: one broken rule per case, counted exactly; a failure publishes nothing."""

from __future__ import annotations

import fcntl
import json
import re
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from core import contract
from core.atomic import write_parquet
from core.contract import contract_schema
from core.settings import Settings
from core.tables import validated_event_files
from ingestion import raw_store
from ingestion.rules import RULES, STRICT_RULES, RuleFailure, drop_repeated_events, merge_failure
from ingestion.validate import (
    ValidationRunning,
    plan_days,
    print_report,
    run_validation,
    validate_tables,
)
from tests.conftest import settings_under

NOW = pd.Timestamp("2025-03-01 12:00", tz="UTC")
NAN = np.nan
EVENT_ROWS = [
    # event_id, user_id, event_time, event_type, course_id, watch_minutes, quiz_score, amount
    ("e01", "u1", "2025-02-27 08:00", "login", None, NAN, NAN, NAN),
    ("e02", "u1", "2025-02-27 08:05", "video_watch", "c1", 12.5, NAN, NAN),
    ("e03", "u1", "2025-02-27 08:30", "quiz_attempt", "c1", NAN, 80.0, NAN),
    ("e04", "u1", "2025-02-28 09:00", "payment_success", None, NAN, NAN, 19.99),
    ("e05", "u2", "2025-02-10 10:00", "course_enroll", "c2", NAN, NAN, NAN),
    ("e06", "u2", "2025-02-10 10:00", "video_watch", "c2", 30.0, NAN, NAN),  # same time, other type
    ("e07", "u2", "2025-02-11 10:00", "payment_failed", None, NAN, NAN, 19.99),
    ("e08", "u2", "2025-02-12 10:00", "support_ticket", None, NAN, NAN, NAN),
    ("e09", "u3", "2025-02-15 10:00", "login", None, NAN, NAN, NAN),
    ("e10", "u3", "2025-03-01 11:00", "video_watch", "c1", 0.0, NAN, NAN),
    ("e11", "u3", "2025-03-01 11:30", "login", None, NAN, NAN, NAN),  # newest: 30 min old
    (
        "e12",
        "u1",
        "2025-02-27 08:05",
        "video_watch",
        "c2",
        5.0,
        NAN,
        NAN,
    ),  # same time, other course
]


def clean_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four users (u4 without events) and twelve events that break no rule at NOW."""
    users = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4"],
            "signup_time": pd.to_datetime(
                ["2025-01-01", "2025-01-05 09:00", "2025-02-01", "2025-02-20"],
                utc=True,
                format="ISO8601",
            ).as_unit("us"),
            "plan": ["free", "paid", "free", "unknown"],
            "country": ["DE", "US", "NA", "unknown"],
            "acquisition_channel": ["ads", "organic", "referral", "unknown"],
        }
    )
    events = pd.DataFrame(EVENT_ROWS, columns=list(contract.EVENT_COLUMNS))
    events["event_time"] = pd.to_datetime(events["event_time"], utc=True).dt.as_unit("us")
    return users, events


def set_values(frame: pd.DataFrame, key: str, ids: list[str], column: str, value: object):
    frame.loc[frame[key].isin(ids), column] = value
    return frame


def on_events(ids: list[str], column: str, value: object) -> Callable:
    return lambda u, e: (u, set_values(e, "event_id", ids, column, value))


def on_users(ids: list[str], column: str, value: object) -> Callable:
    return lambda u, e: (set_values(u, "user_id", ids, column, value), e)


def two_changes(first: Callable, second: Callable) -> Callable:
    return lambda u, e: second(*first(u, e))


# (case, how to break the clean tables, the rule that must fail, how many rows break it)
GATES = [
    ("users_schema", lambda u, e: (u.drop(columns="signup_time"), e), "users_schema", 1),
    (
        "events_schema",
        lambda u, e: (u, e.assign(watch_minutes=e["watch_minutes"].astype(str))),
        "events_schema",
        1,
    ),
    (
        "users_nulls",
        two_changes(on_users(["u4"], "signup_time", pd.NaT), on_users(["u3"], "country", None)),
        "users_nulls",
        2,
    ),
    (
        "events_nulls",
        two_changes(
            on_events(["e08"], "event_time", pd.NaT), on_events(["e09"], "event_type", None)
        ),
        "events_nulls",
        2,
    ),
    ("unique_user_id", lambda u, e: (pd.concat([u, u.tail(1)]), e), "unique_user_id", 2),
    ("unique_event_id", on_events(["e12"], "event_id", "e11"), "unique_event_id", 2),
    (
        "referential_integrity",
        on_events(["e08", "e09"], "user_id", "ghost"),
        "referential_integrity",
        2,
    ),
    (
        "allowed_event_types",
        on_events(["e01", "e09"], "event_type", "logout"),
        "allowed_event_types",
        2,
    ),
    (
        "watch_minutes_range",
        two_changes(
            on_events(["e02"], "watch_minutes", -1.0), on_events(["e10"], "watch_minutes", 1441.0)
        ),
        "watch_minutes_range",
        2,
    ),
    ("quiz_score_range", on_events(["e03"], "quiz_score", 100.5), "quiz_score_range", 1),
    (
        "amount_range",
        two_changes(on_events(["e04"], "amount", 0.0), on_events(["e07"], "amount", -5.0)),
        "amount_range",
        2,
    ),
    (
        "measure_event_type",
        two_changes(on_events(["e01"], "watch_minutes", 3.0), on_events(["e08"], "amount", 10.0)),
        "measure_event_type",
        2,
    ),
    (
        "event_before_signup",
        on_events(["e05", "e06"], "event_time", pd.Timestamp("2025-01-05 08:59", tz="UTC")),
        "event_before_signup",
        2,
    ),
    (
        "future_timestamp",
        two_changes(
            on_events(["e11"], "event_time", NOW + pd.Timedelta(hours=1)),
            on_users(["u4"], "signup_time", NOW + pd.Timedelta(days=1)),
        ),
        "future_timestamp",
        2,
    ),
    (
        "duplicate_events",
        lambda u, e: (u, pd.concat([e, e[e.event_id == "e03"].assign(event_id="e99")])),
        "duplicate_events",
        2,
    ),
    ("volume", lambda u, e: (u, e[e.event_id.isin(["e09", "e10", "e11"])]), "volume", 1),
    # Newest event left is e03, 51.5 h before NOW (limit 48 h).
    ("freshness", lambda u, e: (u, e[~e.event_id.isin(["e04", "e10", "e11"])]), "freshness", 1),
    (
        "plan_values",
        two_changes(on_users(["u1"], "plan", "Paid"), on_users(["u2"], "plan", "gold")),
        "plan_values",
        2,
    ),
]


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """The suite's settings with the freshness gate on, as the product has it."""
    return settings_under(tmp_path, **({"max_event_age_hours": 48} | overrides))


def write_raw(settings: Settings, users: pd.DataFrame, events: pd.DataFrame) -> None:
    """Raw tables as given, around the raw store's typing and de-duplication, as a file
    written by hand would be: what the gates must catch."""
    shutil.rmtree(raw_store.events_root(settings), ignore_errors=True)
    write_parquet(users, raw_store.users_path(settings))
    write_parquet(events, raw_store.events_root(settings) / "date=2025-01-05" / "events.parquet")


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def latest_report(settings: Settings) -> dict:
    return json.loads((settings.reports_dir / "validation" / "latest.json").read_text())


@pytest.mark.parametrize(
    "break_tables, rule, count", [g[1:] for g in GATES], ids=[g[0] for g in GATES]
)
def test_each_gate_fails_counts_and_leaves_validated_untouched(tmp_path, break_tables, rule, count):
    settings = make_settings(tmp_path)
    users, events = clean_tables()
    write_raw(settings, users, events)
    assert run_validation(settings, now=NOW).passed  # the previously accepted run
    before = snapshot(settings.validated_dir)

    write_raw(settings, *break_tables(users.copy(), events.copy()))
    report = run_validation(settings, now=NOW)

    assert not report.passed
    assert {f.rule: f.count for f in report.failures} == {rule: count}
    assert 1 <= len(report.failures[0].examples) <= 5
    assert snapshot(settings.validated_dir) == before
    saved = latest_report(settings)
    assert saved["passed"] is False and [f["rule"] for f in saved["failures"]] == [rule]


def test_clean_data_passes_and_publishes_sorted_tables_and_manifest(tmp_path):
    settings = make_settings(tmp_path)
    write_raw(settings, *clean_tables())

    report = run_validation(settings, now=NOW)

    assert report.passed and report.failures == []
    out = settings.validated_dir
    # One file per raw day: write_raw lands every event in raw's date=2025-01-05.
    [day_file] = validated_event_files(settings)
    assert day_file == out / "events" / "date=2025-01-05" / "events.parquet"
    users, events = pq.read_table(out / "users.parquet"), pq.read_table(day_file)
    assert users.schema.remove_metadata() == contract_schema(contract.USER_COLUMNS)
    assert events.schema.remove_metadata() == contract_schema(contract.EVENT_COLUMNS)
    times = events.column("event_time").to_pylist()
    assert times == sorted(times) and len(times) == 12 and users.num_rows == 4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["users"] == 4 and manifest["events"] == 12
    assert manifest["newest_event"] == "2025-03-01T11:30:00+00:00"
    assert set(manifest["raw_files"]) == {"users", "events"}
    assert latest_report(settings)["passed"] is True


def test_freshness_is_off_with_zero_hours(tmp_path):
    settings = make_settings(tmp_path, max_event_age_hours=0)
    write_raw(settings, *clean_tables())

    report = run_validation(settings, now=NOW + pd.Timedelta(days=365))

    assert report.passed
    assert "freshness" in report.stats["skipped"]


def test_volume_is_skipped_without_a_previous_accepted_run():
    users, events = clean_tables()
    report = validate_tables(
        users, events.head(1), now=NOW, max_event_age_hours=0, volume_factor=3.0, previous=None
    )

    assert report.passed
    assert report.stats["skipped"]["volume"] == "no previous accepted run"


def test_schema_failure_skips_the_rules_that_need_the_column():
    users, events = clean_tables()
    report = validate_tables(
        users,
        events.drop(columns="event_time"),
        now=NOW,
        max_event_age_hours=48,
        volume_factor=3.0,
        previous={"events": 12},
    )

    assert {f.rule: f.count for f in report.failures} == {"events_schema": 1}
    assert {"freshness", "future_timestamp", "event_before_signup"} <= set(report.stats["skipped"])


def test_missing_raw_file_names_the_command_that_makes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"users\.parquet.*churn data generate"):
        run_validation(make_settings(tmp_path), now=NOW)


def test_report_is_json_safe_and_printable_with_five_examples_at_most():
    users, events = clean_tables()
    events["event_type"] = events["event_type"].replace({"login": "logout", "video_watch": "view"})
    report = validate_tables(
        users, events, now=NOW, max_event_age_hours=48, volume_factor=3.0, previous=None
    )
    console = Console(record=True, width=200)
    print_report(report, console)

    failure = next(f for f in report.failures if f.rule == "allowed_event_types")
    assert failure.count == 7 and len(failure.examples) == 5
    json.dumps(report.to_dict())  # no numpy, NaN or Timestamp left
    text = console.export_text()
    assert "FAILED" in text and "allowed_event_types" in text and "'logout'" in text


RELAXABLE = [g for g in GATES if g[2] not in STRICT_RULES]


def relaxed_run(tmp_path: Path, break_tables: Callable, rule: str, level: str):
    """An accepted run, then the broken tables with ``rule`` at ``level``: (settings, report)."""
    settings = make_settings(tmp_path, validation_severity={rule: level})
    users, events = clean_tables()
    write_raw(settings, users, events)
    assert run_validation(settings, now=NOW).passed
    write_raw(settings, *break_tables(users.copy(), events.copy()))
    return settings, run_validation(settings, now=NOW)


@pytest.mark.parametrize(
    "break_tables, rule, count", [g[1:] for g in RELAXABLE], ids=[g[0] for g in RELAXABLE]
)
def test_a_rule_relaxed_to_warn_is_reported_and_the_run_passes(tmp_path, break_tables, rule, count):
    settings, report = relaxed_run(tmp_path, break_tables, rule, "warn")

    assert report.passed
    assert report.failures == []
    assert {f.rule: f.count for f in report.warnings} == {rule: count}
    saved = latest_report(settings)
    assert saved["passed"] is True and [w["rule"] for w in saved["warnings"]] == [rule]
    manifest = json.loads((settings.validated_dir / "manifest.json").read_text())
    assert manifest["events"] == report.stats["events"]  # the relaxed tables were published


@pytest.mark.parametrize(
    "break_tables, rule", [g[1:3] for g in RELAXABLE], ids=[g[0] for g in RELAXABLE]
)
def test_a_rule_turned_off_is_skipped_and_says_so(tmp_path, break_tables, rule):
    _, report = relaxed_run(tmp_path, break_tables, rule, "off")

    assert report.passed and report.failures == [] and report.warnings == []
    assert report.stats["skipped"][rule].startswith("off")


def test_other_rules_stay_errors_when_one_is_relaxed(tmp_path):
    users, events = clean_tables()
    events = pd.concat([events, events[events.event_id == "e03"].assign(event_id="e99")])
    events.loc[events.event_id == "e01", "event_type"] = "logout"
    report = validate_tables(
        users, events, now=NOW, max_event_age_hours=0, volume_factor=3.0, previous=None,
        severity={"duplicate_events": "warn"},
    )  # fmt: skip
    assert not report.passed
    assert [f.rule for f in report.failures] == ["allowed_event_types"]
    assert [f.rule for f in report.warnings] == ["duplicate_events"]


@pytest.mark.parametrize(
    ("severity", "message"),
    [
        ({"users_schema": "warn"}, "users_schema cannot be relaxed"),
        ({"referential_integrity": "off"}, "referential_integrity cannot be relaxed"),
        ({"duplicate_event": "warn"}, "no rule 'duplicate_event'"),
        ({"volume": "ignore"}, "volume='ignore', expected error|warn|off"),
    ],
)
def test_a_severity_that_cannot_hold_names_the_problem(severity, message):
    users, events = clean_tables()
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_tables(
            users, events, now=NOW, max_event_age_hours=0, volume_factor=3.0, previous=None,
            severity=severity,
        )  # fmt: skip


def test_every_rule_a_gate_breaks_is_listed():
    assert {g[2] for g in GATES} == set(RULES)


def test_repeats_are_dropped_keeping_the_lowest_event_id():
    _, events = clean_tables()
    repeat = events[events.event_id.isin(["e03", "e04"])]
    events = pd.concat(
        [repeat.assign(event_id=["e00", "e98"]), events, repeat.assign(event_id=["e97", "e99"])]
    )
    kept, warning = drop_repeated_events(events)
    # e03's group: e00, e03 (e03's twin e97 too) → e00 stays; e04's: e04, e98, e99 → e04 stays.
    assert sorted(kept["event_id"]) == sorted(["e00", *(r[0] for r in EVENT_ROWS if r[0] != "e03")])
    assert warning.rule == "duplicate_events" and warning.count == 4
    assert "dropped 4 repeated events" in warning.message
    unchanged, none = drop_repeated_events(clean_tables()[1])
    assert none is None and len(unchanged) == len(EVENT_ROWS)


def test_dropping_repeats_publishes_the_rest_and_reports_the_count(tmp_path):
    settings = make_settings(tmp_path, drop_duplicate_events=True)
    users, events = clean_tables()
    events = pd.concat([events, events[events.event_id == "e03"].assign(event_id="e99")])
    write_raw(settings, users, events)

    report = run_validation(settings, now=NOW)

    assert report.passed
    assert report.stats["dropped_duplicate_events"] == 1
    assert [(w.rule, w.count) for w in report.warnings] == [("duplicate_events", 1)]
    [day_file] = validated_event_files(settings)
    published = pq.read_table(day_file).column("event_id")
    assert sorted(published.to_pylist()) == sorted(r[0] for r in EVENT_ROWS)
    console = Console(record=True, width=200)
    print_report(report, console)
    text = console.export_text()
    assert "Warnings" in text and "dropped 1 repeated events" in text


# Validation of what changed: raw/ by day (as an ingest writes it), validated/ by day.
def contract_tables(users: pd.DataFrame, events: pd.DataFrame):
    return (
        contract.to_contract_table(users, contract.USER_COLUMNS),
        contract.to_contract_table(events.reset_index(drop=True), contract.EVENT_COLUMNS),
    )


def land(settings: Settings, users: pd.DataFrame, events: pd.DataFrame) -> None:
    """Raw as a full export lands: users, and events in their event day's partition."""
    users_table, events_table = contract_tables(users, events)
    raw_store.replace_all(settings, users_table, [events_table])


def land_day(settings: Settings, day: str, events: pd.DataFrame) -> None:
    """Events merged into one raw day, as a nightly ingest or a late event does."""
    _, table = contract_tables(clean_tables()[0], events)
    raw_store.merge_day(settings, date.fromisoformat(day), table)


def day_files(settings: Settings) -> dict[str, int]:
    """Each validated day's file and its mtime."""
    return {f.parent.name: f.stat().st_mtime_ns for f in validated_event_files(settings)}


def stored_ids(settings: Settings) -> list[str]:
    return sorted(
        i for f in validated_event_files(settings) for i in pq.read_table(f)["event_id"].to_pylist()
    )


MARCH_1 = ["e10", "e11"]


def test_a_second_run_reads_only_the_new_day(tmp_path):
    settings = make_settings(tmp_path)
    users, events = clean_tables()
    land(settings, users, events[~events.event_id.isin(MARCH_1)])
    first = run_validation(settings, now=NOW)
    assert first.passed and first.stats["days"]["full"] is True
    assert len(first.stats["days"]["validated"]) == 6 and first.stats["days"]["rows_read"] == 10
    before = day_files(settings)

    land_day(settings, "2025-03-01", events[events.event_id.isin(MARCH_1)])
    second = run_validation(settings, now=NOW)

    assert second.passed
    days = second.stats["days"]
    assert days["validated"] == ["2025-03-01"] and days["rows_read"] == 2
    assert days["unchanged"] == 6 and days["full"] is False and days["users_checked"] is False
    after = day_files(settings)
    assert {d: after[d] for d in before} == before  # the stored days were not rewritten
    assert set(after) - set(before) == {"date=2025-03-01"}
    assert second.stats["events"] == 12 and second.stats["previous_events"] == 10
    assert second.stats["newest_event"] == "2025-03-01T11:30:00+00:00"
    assert stored_ids(settings) == sorted(r[0] for r in EVENT_ROWS)
    manifest = json.loads((settings.validated_dir / "manifest.json").read_text())
    assert manifest["events"] == 12 and len(manifest["days"]) == 7


def test_a_day_that_changed_in_raw_is_validated_again(tmp_path):
    settings = make_settings(tmp_path)
    users, events = clean_tables()
    land(settings, users, events)
    assert run_validation(settings, now=NOW).passed
    before = day_files(settings)

    late = events[events.event_id == "e01"].assign(event_id="e13")
    late["event_time"] = pd.Timestamp("2025-02-27 21:00", tz="UTC")
    land_day(settings, "2025-02-27", late)
    report = run_validation(settings, now=NOW)

    assert report.passed and report.stats["days"]["validated"] == ["2025-02-27"]
    assert report.stats["days"]["rows_read"] == 5  # e01, e02, e03, e12 and the late e13
    after = day_files(settings)
    assert after["date=2025-02-27"] != before["date=2025-02-27"]
    assert {d: t for d, t in after.items() if d != "date=2025-02-27"} == {
        d: t for d, t in before.items() if d != "date=2025-02-27"
    }
    assert "e13" in stored_ids(settings) and report.stats["events"] == 13


def test_nothing_changed_reads_no_day_and_freshness_still_holds_the_history(tmp_path):
    settings = make_settings(tmp_path)
    land(settings, *clean_tables())
    assert run_validation(settings, now=NOW).passed

    same = run_validation(settings, now=NOW)
    assert same.passed and same.stats["days"]["validated"] == [] and same.stats["events"] == 12
    stale = run_validation(settings, now=NOW + pd.Timedelta(days=3))  # no new export since
    assert [(f.rule, f.count) for f in stale.failures] == [("freshness", 1)]


def test_an_event_id_already_stored_on_another_day_fails_unique_event_id(tmp_path):
    settings = make_settings(tmp_path)
    users, events = clean_tables()
    land(settings, users, events[~events.event_id.isin(MARCH_1)])
    assert run_validation(settings, now=NOW).passed
    before = snapshot(settings.validated_dir)

    # e01 (2025-02-27, stored) sent again as a new event of March 1st.
    land_day(settings, "2025-03-01", events[events.event_id.isin(MARCH_1)].assign(
        event_id=["e01", "e11"]))  # fmt: skip
    report = run_validation(settings, now=NOW)

    assert {f.rule: f.count for f in report.failures} == {"unique_event_id": 2}
    assert {(e["day"], e["event_id"]) for e in report.failures[0].examples} == {
        ("2025-02-27", "e01"), ("2025-03-01", "e01")}  # fmt: skip
    assert snapshot(settings.validated_dir) == before


def test_event_ids_shared_by_two_new_days_fail_in_a_full_run(tmp_path):
    settings = make_settings(tmp_path)
    users, events = clean_tables()
    land(settings, users, events.assign(event_id=events.event_id.replace({"e09": "e05"})))

    report = run_validation(settings, now=NOW, full=True)

    # e05 on 2025-02-10 and e09 renamed e05 on 2025-02-15: each alone in its day.
    assert {f.rule: f.count for f in report.failures} == {"unique_event_id": 2}
    assert not validated_event_files(settings)


def test_users_that_change_are_checked_against_the_stored_days(tmp_path):
    settings = make_settings(tmp_path)
    users, events = clean_tables()
    land(settings, users, events)
    assert run_validation(settings, now=NOW).passed

    # u2 (4 stored events) leaves; u1's signup moves after 2 of its 4 events.
    changed = users[users.user_id != "u2"].copy()
    changed.loc[changed.user_id == "u1", "signup_time"] = pd.Timestamp("2025-02-28", tz="UTC")
    land(settings, changed, events)
    report = run_validation(settings, now=NOW)

    assert report.stats["days"]["validated"] == [] and report.stats["days"]["users_checked"]
    assert {f.rule: f.count for f in report.failures} == {
        "referential_integrity": 4, "event_before_signup": 4}  # fmt: skip


def test_severity_still_relaxes_a_rule_found_across_days(tmp_path):
    settings = make_settings(tmp_path, validation_severity={"unique_event_id": "warn"})
    users, events = clean_tables()
    land(settings, users, events.assign(event_id=events.event_id.replace({"e09": "e05"})))

    report = run_validation(settings, now=NOW)

    assert report.passed and [(w.rule, w.count) for w in report.warnings] == [
        ("unique_event_id", 2)]  # fmt: skip
    assert len(validated_event_files(settings)) == 7


def test_a_day_gone_from_raw_is_dropped_and_full_validates_every_day_again(tmp_path):
    settings = make_settings(tmp_path)
    users, events = clean_tables()
    land(settings, users, events)
    assert run_validation(settings, now=NOW).passed

    land(settings, users, events[events.event_id != "e09"])  # 2025-02-15's only event
    dropped = run_validation(settings, now=NOW)
    assert dropped.passed and dropped.stats["days"]["removed"] == ["2025-02-15"]
    assert dropped.stats["days"]["validated"] == [] and dropped.stats["events"] == 11
    assert "date=2025-02-15" not in day_files(settings)

    again = run_validation(settings, now=NOW, full=True)
    assert again.passed and again.stats["days"]["full"] and again.stats["users"] == 4
    assert len(again.stats["days"]["validated"]) == 6 and again.stats["days"]["rows_read"] == 11


def test_plan_days_takes_new_changed_and_gone_days():
    one, two, three = date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)
    stat = {"bytes": 1, "mtime_ns": 1, "inode": 1}
    stored = {one: {"raw": stat}, two: {"raw": stat}}
    plan = plan_days({one: stat, three: stat}, stored, users_changed=False)
    assert (plan.changed, plan.unchanged, plan.removed) == ([three], [one], [two])
    plan = plan_days({one: {**stat, "mtime_ns": 2}, two: stat}, stored, users_changed=True)
    assert (plan.changed, plan.unchanged, plan.removed, plan.users_changed) == (
        [one], [two], [], True)  # fmt: skip
    assert plan_days({one: stat}, None, users_changed=False).full


def test_a_data_dir_validated_whole_is_validated_again_by_day(tmp_path):
    settings = make_settings(tmp_path)
    users, events = clean_tables()
    land(settings, users, events)
    legacy = settings.validated_dir / "events.parquet"  # the layout before days
    write_parquet(events, legacy)
    (settings.validated_dir / "manifest.json").write_text(json.dumps({"events": 12, "users": 4}))
    assert validated_event_files(settings) == [legacy]

    report = run_validation(settings, now=NOW)

    assert report.passed and report.stats["days"]["full"] and report.stats["previous_events"] == 12
    assert not legacy.exists() and len(validated_event_files(settings)) == 7


def test_a_second_validation_at_once_stops_and_changes_nothing(tmp_path):
    settings = make_settings(tmp_path)
    land(settings, *clean_tables())
    with open(settings.data_dir / ".validate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValidationRunning, match="another validation is writing"):
            run_validation(settings, now=NOW)
    assert not settings.validated_dir.exists()


def test_a_rule_broken_on_several_days_is_one_failure():
    first = RuleFailure("amount_range", 2, "amount not > 0: 2 rows", [{"i": 0}, {"i": 1}])
    more = RuleFailure("amount_range", 4, "amount not > 0: 4 rows", [{"i": j} for j in range(2, 6)])

    merged = merge_failure(merge_failure(None, first), more)

    assert (merged.rule, merged.count) == ("amount_range", 6)
    assert merged.message == "amount not > 0: 2 rows; amount not > 0: 4 rows"
    assert merged.examples == [{"i": j} for j in range(5)]
