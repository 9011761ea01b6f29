"""The nightly chain's order and stopping rule, the cron schedule, and job-run gauges."""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from rich.console import Console

from churn.nightly import FAILED_STEP, next_run, night_samples, nightly_steps, run_nightly
from core.history import read_records
from monitor.jobs import DURATION, FAILURE, SUCCESS, job_run, run_samples

DAY = date(2026, 11, 25)
NIGHT = [
    "data validate",
    "data prepare --day 2026-11-25",
    "features build --day 2026-11-25",
    "features materialize --end 2026-11-26T00:00:00",
    "batch score --as-of 2026-11-26",
    "monitor estimate --as-of 2026-11-26",
    "monitor drift",
    "monitor outcomes",
    "monitor uplift",
    "monitor skew",
    "monitor retrain-if-needed",
]


def test_the_night_runs_data_then_features_then_scoring_then_monitoring(make_settings):
    steps = nightly_steps(make_settings(), DAY)
    assert [" ".join(argv) for _, argv in steps] == NIGHT
    assert [stage.name for stage, _ in steps] == [
        "validate", "prepare", "features", "materialize", "batch", "estimate", "drift", "outcomes",
        "uplift", "skew", "retrain",
    ]  # fmt: skip


def test_the_portals_export_is_ingested_first(make_settings):
    portal = (Path("/data/incoming/users.parquet"), Path("/data/incoming/events.parquet"))
    steps = [" ".join(argv) for _, argv in nightly_steps(make_settings(), DAY, portal)]
    assert steps == [
        "data ingest --users-file /data/incoming/users.parquet"
        " --events-file /data/incoming/events.parquet",
        *NIGHT,
    ]


def _runner(codes: dict[str, int]):
    ran: list[str] = []

    def run(command, env, check):  # the signature run_nightly calls subprocess.run with
        step = " ".join(command[1:3])
        ran.append(step)
        assert env["CHURN_DATA_DIR"]
        return subprocess.CompletedProcess(command, codes.get(step, 0))

    return run, ran


def test_findings_do_not_stop_the_night(make_settings):
    settings, console = make_settings(), Console(record=True, width=200)
    run, ran = _runner({"monitor estimate": 20, "monitor drift": 20, "monitor skew": 3})
    assert run_nightly(settings, DAY, console, run) == 0
    assert len(ran) == len(NIGHT)
    output = console.export_text()
    assert "drift alert (exit 20); the night goes on" in output
    assert (
        "estimated PR-AUC skill under the floor for CHURN_ESTIMATE_ALERT_NIGHTS nights (exit 20); "
        "the night goes on"
    ) in output
    assert "online/offline mismatch (exit 3); the night goes on" in output
    (record,) = read_records(settings.nights_path)  # what `churn status` shows
    assert (record["day"], record["exit_code"], record["stopped_at"]) == ("2026-11-25", 0, None)
    states = {step["step"]: (step["state"], step["exit_code"]) for step in record["steps"]}
    assert states["drift"] == ("finding", 20) and states["batch"] == ("done", 0)
    assert states["estimate"] == ("finding", 20)


@pytest.mark.parametrize(
    ("failing", "code", "name"),
    [("features build", 1, "features"), ("data prepare", 2, "prepare"), ("monitor drift", 1, "drift"),
     ("monitor skew", 1, "skew"), ("data validate", -9, "validate")],
)  # fmt: skip
def test_a_failure_stops_the_night_and_names_the_step(make_settings, failing, code, name):
    settings, console = make_settings(), Console(record=True, width=300)
    run, ran = _runner({failing: code, "monitor retrain-if-needed": 1})
    assert run_nightly(settings, DAY, console, run) == code
    assert ran[-1] == failing  # nothing runs on what the failed step did not make
    steps = [stage.name for stage, _ in nightly_steps(settings, DAY)]
    not_run = ", ".join(steps[steps.index(name) + 1 :])
    assert f"failed (exit {code}): the night stops at {name}; not run: {not_run}" in (
        console.export_text()
    )
    (record,) = read_records(settings.nights_path)
    assert (record["stopped_at"], record["exit_code"]) == (name, code)
    states = [(step["step"], step["state"]) for step in record["steps"]]
    assert states[steps.index(name)] == (name, "failed")
    assert all(state == "not run" for _, state in states[steps.index(name) + 1 :])


def test_the_night_reports_the_step_that_stopped_it():
    (failed,) = night_samples(DAY, "features", 1)
    assert (failed.name, failed.value) == (FAILED_STEP, 1.0)
    assert failed.labels == {"step": "features", "exit_code": "1", "day": "2026-11-25"}
    (completed,) = night_samples(DAY)
    assert (completed.name, completed.value, completed.labels) == (
        FAILED_STEP, 0.0, {"day": "2026-11-25"}
    )  # fmt: skip


def test_next_run_follows_the_cron_expression_in_utc():
    after = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    assert next_run("0 2 * * *", after) == datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    assert next_run("30 1 * * 1", after) == datetime(2026, 11, 30, 1, 30, tzinfo=UTC)


def test_a_bad_cron_expression_is_a_settings_error(make_settings):
    with pytest.raises(ValueError, match="CHURN_NIGHTLY_CRON"):
        make_settings(nightly_cron="every night")


def test_run_samples_say_success_with_duration_or_failure():
    ok = {s.name: s.value for s in run_samples(True, started=100.0, finished=112.5)}
    assert ok == {SUCCESS: 112.5, DURATION: 12.5}
    failed = {s.name: s.value for s in run_samples(False, started=100.0, finished=101.0)}
    assert failed == {FAILURE: 101.0}


def test_job_run_reraises_what_failed(make_settings):
    with pytest.raises(RuntimeError, match="boom"), job_run(make_settings(), "batch"):
        raise RuntimeError("boom")
