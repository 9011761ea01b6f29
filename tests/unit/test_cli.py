"""The ``churn`` CLI: exit codes and messages a user sees, on real files in a tmp dir."""

from __future__ import annotations

import os
import subprocess

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churn.cli import app
from core.contract import EVENT_COLUMNS, to_contract_table
from ingestion import raw_store
from tests.conftest import settings_under

runner = CliRunner()


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "CHURN_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "CHURN_MAX_EVENT_AGE_HOURS": "0",
        "CHURN_REDIS_URL": "redis://127.0.0.1:6379/0",
    }


def test_stages_run_in_order_from_the_cli(env, tmp_path):
    steps = [
        ["data", "generate", "--users", "120", "--days", "40", "--start", "2026-01-01"],
        ["data", "validate"],
        ["data", "prepare"],
        ["features", "build"],
    ]
    for step in steps:
        result = runner.invoke(app, step, env=env)
        assert result.exit_code == 0, (step, result.output)
    assert (tmp_path / "data" / "features" / "user_features" / "date=2026-02-09").is_dir()
    # A daily run of the last day replaces that day's partition only.
    for step in (
        ["data", "prepare", "--day", "2026-02-09"],
        ["features", "build", "--day", "2026-02-09"],
    ):
        result = runner.invoke(app, step, env=env)
        assert result.exit_code == 0, (step, result.output)
    # The old spelling of --day still runs the same, with a one-line warning naming --day.
    for step in (
        ["data", "prepare", "--as-of", "2026-02-09"],
        ["features", "build", "--as-of", "2026-02-09"],
    ):
        result = runner.invoke(app, step, env=env)
        assert result.exit_code == 0, (step, result.output)
        assert "--as-of is deprecated for a calendar day; use --day" in result.output
    both = runner.invoke(app, ["data", "prepare", "--day", "2026-02-09", "--as-of", "2026-02-09"])
    assert both.exit_code == 2


def _raw_settings(tmp_path):
    return settings_under(tmp_path)


def raw_events(tmp_path) -> pd.DataFrame:
    return raw_store.read_events(_raw_settings(tmp_path)).to_pandas()


def replace_raw_events(tmp_path, events: pd.DataFrame) -> None:
    settings = _raw_settings(tmp_path)
    users = pq.read_table(raw_store.users_path(settings))
    raw_store.replace_all(settings, users, [to_contract_table(events, EVENT_COLUMNS)])


def test_the_purchases_scenario_writes_a_shop_the_gates_accept(env, tmp_path):
    generate = ["data", "generate", "--users", "200", "--days", "40", "--start", "2026-01-01"]
    result = runner.invoke(app, [*generate, "--scenario", "purchases"], env=env)
    assert result.exit_code == 0, result.output
    events = raw_events(tmp_path)
    assert set(events["event_type"]) == {"course_enroll", "payment_success", "payment_failed"}
    result = runner.invoke(app, ["data", "validate"], env=env)
    assert result.exit_code == 0, result.output


def test_an_unknown_scenario_is_refused_with_the_choices(env, tmp_path):
    result = runner.invoke(app, ["data", "generate", "--scenario", "shop"], env=env)
    assert result.exit_code == 2
    assert "baseline, drift, purchases" in result.output
    assert not (tmp_path / "data" / "raw").exists()


def test_validate_without_raw_data_says_what_to_run(env):
    result = runner.invoke(app, ["data", "validate"], env=env)
    assert result.exit_code == 1
    assert "churn data generate" in result.output


def test_features_before_prepare_says_what_to_run(env):
    runner.invoke(
        app, ["data", "generate", "--users", "50", "--days", "20", "--start", "2026-01-01"], env=env
    )
    runner.invoke(app, ["data", "validate"], env=env)
    result = runner.invoke(app, ["features", "build"], env=env)
    assert result.exit_code == 1
    assert "churn data prepare" in result.output


def test_failed_gate_exits_non_zero_and_names_the_rule(env, tmp_path):
    runner.invoke(
        app, ["data", "generate", "--users", "50", "--days", "20", "--start", "2026-01-01"], env=env
    )
    events = raw_events(tmp_path)
    events.loc[events.index[:3], "event_type"] = "teleport"
    replace_raw_events(tmp_path, events)
    result = runner.invoke(app, ["data", "validate"], env=env)
    assert result.exit_code == 1
    assert "allowed_event_types" in result.output
    assert not (tmp_path / "data" / "validated").exists()


def test_a_rule_relaxed_to_warn_passes_with_a_warning(env, tmp_path):
    runner.invoke(
        app, ["data", "generate", "--users", "50", "--days", "20", "--start", "2026-01-01"], env=env
    )
    events = raw_events(tmp_path)
    repeat = events.head(3).assign(event_id=["r1", "r2", "r3"])
    replace_raw_events(tmp_path, pd.concat([events, repeat]))
    assert runner.invoke(app, ["data", "validate"], env=env).exit_code == 1
    relaxed = env | {"CHURN_VALIDATION_SEVERITY": "duplicate_events=warn"}
    result = runner.invoke(app, ["data", "validate"], env=relaxed)
    assert result.exit_code == 0, result.output
    assert "Warnings" in result.output and "duplicate_events" in result.output
    assert "1 warnings" in result.output
    strict = env | {"CHURN_VALIDATION_SEVERITY": "referential_integrity=off"}
    result = runner.invoke(app, ["data", "validate"], env=strict)
    assert result.exit_code == 1
    assert "referential_integrity cannot be relaxed" in result.output


def test_ingest_a_csv_then_validate(env, tmp_path):
    users = tmp_path / "users.csv"
    users.write_text("user_id,signup_time,plan\nu1,2026-01-01 10:00:00,paid\n")
    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,user_id,event_time,event_type,course_id,watch_minutes\n"
        "e1,u1,2026-01-02T10:00:00Z,video_watch,k8s-101,12.5\n"
        "e2,u1,2026-01-03T10:00:00Z,login,,\n"
    )
    result = runner.invoke(
        app, ["data", "ingest", "--users-file", str(users), "--events-file", str(events)], env=env
    )
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["data", "validate"], env=env).exit_code == 0


def test_ingest_of_a_broken_file_is_one_clear_line(env, tmp_path):
    users = tmp_path / "users.csv"
    users.write_text("user_id,plan\nu1,paid\n")
    events = tmp_path / "events.csv"
    events.write_text("event_id,user_id,event_time,event_type\ne1,u1,2026-01-02,login\n")
    result = runner.invoke(
        app, ["data", "ingest", "--users-file", str(users), "--events-file", str(events)], env=env
    )
    assert result.exit_code == 1
    assert "signup_time" in result.output
    assert "Traceback" not in result.output


def test_bad_setting_names_the_variable(env):
    result = runner.invoke(app, ["data", "validate"], env={**env, "CHURN_WINDOWS": "7,seven"})
    assert result.exit_code == 2
    assert "windows" in result.output


def test_env_prints_exports_for_plain_feast(env, tmp_path):
    result = runner.invoke(app, ["env"], env=env)
    assert result.exit_code == 0
    assert (
        f"export CHURN_FEAST_REGISTRY={tmp_path / 'data' / 'feast' / 'registry.db'}"
        in result.output
    )
    assert "export CHURN_FEAST_REDIS=127.0.0.1:6379,db=0" in result.output


def test_env_with_a_bad_setting_prints_nothing_to_eval(env):
    """`eval "$(churn env)"` (and so `. .venv/bin/activate`) must not run the message."""
    result = runner.invoke(app, ["env"], env={**env, "CHURN_WINDOWS": "7,seven"})
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Bad configuration" in result.stderr and "windows" in result.stderr


SOURCE = "postgresql://root:s3cret@db:5432/portal"


def test_env_shows_the_source_with_its_password_as_stars(env):
    result = runner.invoke(app, ["env"], env={**env, "CHURN_SOURCE": SOURCE})
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    line = next(line for line in result.stdout.splitlines() if "CHURN_SOURCE=" in line)
    # A comment: eval must not replace the real source with the stars.
    assert line.startswith("# CHURN_SOURCE='postgresql://root:***@db:5432/portal'")


def test_env_hides_the_redis_password_and_the_token(env):
    secrets = {"CHURN_REDIS_URL": "redis://:s3cret@cache:6379/0", "CHURN_API_TOKEN": "s3cret-t0ken"}
    result = runner.invoke(app, ["env"], env={**env, **secrets})
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert "# CHURN_REDIS_URL='redis://:***@cache:6379/0'" in result.stdout
    assert "# CHURN_FEAST_REDIS='cache:6379,db=0,password=***'" in result.stdout
    assert "# CHURN_API_TOKEN='***'" in result.stdout


def test_env_reveal_exports_the_passwords_for_eval_but_never_the_token(env, tmp_path):
    secrets = {
        "CHURN_SOURCE": SOURCE,
        "CHURN_REDIS_URL": "redis://:s3cret@cache:6379/0",
        "CHURN_API_TOKEN": "s3cret-t0ken",
    }
    result = runner.invoke(app, ["env", "--reveal"], env={**env, **secrets})
    assert result.exit_code == 0, result.output
    script = tmp_path / "exports.sh"
    script.write_text(result.stdout)
    shell = subprocess.run(
        [
            "bash",
            "-c",
            f'. {script} && echo "$CHURN_SOURCE|$CHURN_FEAST_REDIS|${{CHURN_API_TOKEN-unset}}"',
        ],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.strip() == f"{SOURCE}|cache:6379,db=0,password=s3cret|unset"


def test_a_bad_setting_never_shows_a_password(env):
    cluster = {"CHURN_REDIS_URL": "redis://:s3cret@cache:7000/3", "CHURN_REDIS_CLUSTER": "true"}
    result = runner.invoke(app, ["env"], env={**env, **cluster})
    assert result.exit_code == 2
    assert "s3cret" not in result.output
    assert "redis://:***@cache:7000/3" in result.stderr


def test_a_misspelt_variable_stops_the_command_with_one_line(env):
    result = runner.invoke(app, ["data", "validate"], env={**env, "CHURN_HORIZON_DAY": "90"})
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "Bad configuration: CHURN_HORIZON_DAY is not a setting: did you mean CHURN_HORIZON_DAYS?"
    )


def test_a_retired_variable_still_names_its_replacement(env):
    result = runner.invoke(app, ["env"], env={**env, "CHURN_MIN_PR_AUC_LIFT": "2"})
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "CHURN_MIN_PR_AUC_LIFT is no longer read: use CHURN_MIN_PR_AUC_SKILL" in result.stderr


def test_features_sql_shows_the_rendered_windows(env):
    result = runner.invoke(app, ["features", "sql"], env={**env, "CHURN_WINDOWS": "30,60,90"})
    assert result.exit_code == 0, result.output
    assert "ROWS BETWEEN 89 PRECEDING AND CURRENT ROW" in result.output
    assert "AS logins_60d" in result.output
    assert "logins_7d" not in result.output


def test_batch_and_monitoring_jobs_on_bad_input_exit_1_with_the_reason(env, tmp_path):
    """No production model, no batch yet, a corrupt prediction file: one clear line each."""
    no_model = runner.invoke(app, ["batch", "score"], env=env)
    assert no_model.exit_code == 1
    assert "churn promote" in _text(no_model)
    for command in (["monitor", "drift"], ["monitor", "outcomes"]):
        nothing = runner.invoke(app, command, env=env)
        assert nothing.exit_code == 1, (command, nothing.output)
        assert "churn batch score" in _text(nothing)
    batch = tmp_path / "data" / "predictions" / "as_of=2026-11-20"
    batch.mkdir(parents=True)
    (batch / "predictions.parquet").write_bytes(b"not parquet")
    before = (batch / "predictions.parquet").read_bytes()
    corrupt = runner.invoke(app, ["monitor", "drift"], env=env)
    assert corrupt.exit_code == 1, corrupt.output
    assert "predictions.parquet" in _text(corrupt)
    no_daily = runner.invoke(app, ["monitor", "outcomes"], env=env)
    assert no_daily.exit_code == 1, no_daily.output
    assert "churn data prepare" in _text(no_daily)
    assert (batch / "predictions.parquet").read_bytes() == before
    assert not (tmp_path / "artifacts" / "monitoring" / "drift").exists()


def test_retraining_without_a_production_model_says_what_to_run(env):
    result = runner.invoke(app, ["monitor", "retrain-if-needed"], env=env)
    assert result.exit_code == 1
    assert "churn promote" in _text(result)


def _text(result) -> str:
    """The output as one line: rich wraps long messages at the terminal width."""
    return " ".join(result.output.split())
