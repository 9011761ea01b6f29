"""The nightly chain's order and stopping rule, the cron schedule, and job-run gauges."""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime

import pytest
from rich.console import Console

from churn.jobs import DURATION, FAILURE, SUCCESS, job_run, run_samples
from churn.nightly import next_run, nightly_steps, run_nightly


def test_the_night_runs_data_then_features_then_scoring_then_monitoring():
    steps = [" ".join(s) for s in nightly_steps(date(2026, 11, 25))]
    assert steps == [
        "data validate",
        "data prepare --as-of 2026-11-25",
        "features build --as-of 2026-11-25",
        "features materialize --end 2026-11-26T00:00:00",
        "batch score --as-of 2026-11-26",
        "monitor drift",
        "monitor outcomes",
        "monitor skew",
        "monitor retrain-if-needed",
    ]


def _runner(codes: dict[str, int]):
    ran: list[str] = []

    def run(command, env, check):  # the signature run_nightly calls subprocess.run with
        step = " ".join(command[1:3])
        ran.append(step)
        assert env["CHURN_DATA_DIR"]
        return subprocess.CompletedProcess(command, codes.get(step, 0))

    return run, ran


def test_findings_do_not_stop_the_night_but_a_failure_does(make_settings):
    settings, console = make_settings(), Console(record=True, width=200)
    run, ran = _runner({"monitor drift": 20, "monitor skew": 3})
    assert run_nightly(settings, date(2026, 11, 25), console, run) == 0
    assert len(ran) == 9
    assert "drift alert (exit 20)" in console.export_text()

    run, ran = _runner({"features build": 1, "monitor drift": 1})
    assert run_nightly(settings, date(2026, 11, 25), console, run) == 1
    assert ran[-1] == "features build"  # nothing is scored on features that failed


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
