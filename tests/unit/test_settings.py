"""The one settings object: parsing, validation, derived paths, the churn.yaml file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import (
    CONFIG_FILE_VARIABLE,
    NOT_SETTINGS,
    Settings,
    UnknownVariableError,
    check_variables,
    get_settings,
    known_variables,
)

ROOT = Path(__file__).resolve().parents[2]


def test_windows_from_a_comma_list(monkeypatch):
    monkeypatch.setenv("CHURN_WINDOWS", "30, 90,60")
    assert get_settings().windows == (30, 60, 90)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("CHURN_WINDOWS", "7,7", "duplicates"),
        ("CHURN_WINDOWS", "0,7", "between 1 and 366"),
        ("CHURN_REDIS_URL", "localhost:6379", "CHURN_REDIS_URL"),
        ("CHURN_HORIZON_DAYS", "0", "horizon_days"),
        ("CHURN_FEAST_PROJECT", "my-project!", "feast_project"),
        ("CHURN_DUCKDB_MEMORY_LIMIT", "lots", "duckdb_memory_limit"),
        ("CHURN_ENGINE", "polars", "engine"),
        ("CHURN_SPARK_DRIVER_MEMORY", "2 GB", "spark_driver_memory"),
        ("CHURN_VALIDATION_SEVERITY", "duplicate_events:warn", "rule=error|warn|off pairs"),
        ("CHURN_VALIDATION_SEVERITY", "volume=ignore", "validation_severity"),
    ],
)
def test_bad_values_fail_fast_and_say_which(monkeypatch, variable, value, named):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=named):
        get_settings()


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "CHURN_MIN_PR_AUC_LIFT",
            "CHURN_MIN_PR_AUC_LIFT is no longer read: use CHURN_MIN_PR_AUC_SKILL",
        ),
        ("CHURN_MIN_PRECISION_AT_K", "CHURN_MIN_PRECISION_AT_K is no longer read: use nothing"),
        (
            "CHURN_REALIZED_PR_AUC_LIFT_FLOOR",
            "CHURN_REALIZED_PR_AUC_LIFT_FLOOR is no longer read: use CHURN_REALIZED_PR_AUC_SKILL_FLOOR",
        ),
    ],
)
def test_a_retired_variable_stops_the_run_naming_its_replacement(monkeypatch, variable, message):
    monkeypatch.setenv(variable, "1")
    with pytest.raises(UnknownVariableError) as refused:
        get_settings()
    assert str(refused.value).startswith(message)
    assert "not a setting" not in str(refused.value)


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "CHURN_HORIZON_DAY",
            "CHURN_HORIZON_DAY is not a setting: did you mean CHURN_HORIZON_DAYS?",
        ),
        ("CHURN_TOPK", "CHURN_TOPK is not a setting: did you mean CHURN_TOP_K?"),
        ("CHURN_DATADIR", "CHURN_DATADIR is not a setting: did you mean CHURN_DATA_DIR?"),
        # read case-insensitively by the settings, so refused the same way
        (
            "churn_holdout_shares",
            "churn_holdout_shares is not a setting: did you mean CHURN_HOLDOUT_SHARE?",
        ),
        ("CHURN_ZZZ", "CHURN_ZZZ is not a setting, nor like any setting's name"),
    ],
)
def test_an_unknown_variable_stops_the_run_naming_the_closest_setting(
    monkeypatch, variable, message
):
    monkeypatch.setenv(variable, "90")
    with pytest.raises(UnknownVariableError) as refused:
        get_settings()
    assert str(refused.value) == message


def test_every_unknown_variable_is_named_on_one_line(monkeypatch):
    monkeypatch.setenv("CHURN_HORIZON_DAY", "90")
    monkeypatch.setenv("CHURN_MIN_PR_AUC_LIFT", "2")
    with pytest.raises(UnknownVariableError) as refused:
        get_settings()
    assert "\n" not in str(refused.value)
    assert "CHURN_HORIZON_DAY is not a setting" in str(refused.value)
    assert "CHURN_MIN_PR_AUC_LIFT is no longer read" in str(refused.value)


def test_every_setting_and_every_variable_read_beside_them_is_accepted(monkeypatch, tmp_path):
    defaults = get_settings(data_dir=tmp_path)
    for key, value in defaults.as_env().items():
        monkeypatch.setenv(key, value)
    for key in NOT_SETTINGS:
        monkeypatch.setenv(key, "")
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(tmp_path / "none.yaml"))
    assert get_settings() == defaults
    assert {f"CHURN_{name.upper()}" for name in Settings.model_fields} <= known_variables()


def test_kubernetes_service_links_are_not_refused(monkeypatch):
    """Kubernetes gives every pod these for the churn-api Service of its namespace."""
    links = {
        "CHURN_API_SERVICE_HOST": "10.0.0.7",
        "CHURN_API_SERVICE_PORT": "8000",
        "CHURN_API_SERVICE_PORT_HTTP": "8000",
        "CHURN_API_PORT_8000_TCP": "tcp://10.0.0.7:8000",
        "CHURN_API_PORT_8000_TCP_PROTO": "tcp",
        "CHURN_API_PORT_8000_TCP_PORT": "8000",
        "CHURN_API_PORT_8000_TCP_ADDR": "10.0.0.7",
        "CHURN_REDIS_PORT": "tcp://10.0.0.8:6379",  # a churn-redis Service's
    }
    check_variables(links)
    with pytest.raises(UnknownVariableError, match="CHURN_REDIS_PORT is not a setting"):
        check_variables({"CHURN_REDIS_PORT": "6379"})  # set by hand: a mistake


# Where CHURN_* variables are set for the processes: compose, its .env, the Kubernetes
# manifests and env files, the Dockerfiles and scripts, the Makefile.
DEPLOY_FILES = [ROOT / "docker-compose.yml", ROOT / "Makefile", *ROOT.glob(".env*example*")] + [
    path for path in (ROOT / "deploy").rglob("*") if path.is_file()
]
_VARIABLE = re.compile(r"(?<![A-Za-z0-9_])CHURN_[A-Z0-9_]+")


def test_deploy_files_set_no_variable_the_check_refuses():
    assert ROOT / ".env.example" in DEPLOY_FILES
    named = {
        (name, path.relative_to(ROOT).as_posix())
        for path in DEPLOY_FILES
        for name in _VARIABLE.findall(path.read_text(encoding="utf-8", errors="replace"))
    }
    assert {"CHURN_SOURCE", "CHURN_BOOTSTRAP_DATA"} <= {name for name, _ in named}
    unknown = sorted((name, where) for name, where in named if name not in known_variables())
    assert unknown == []


def test_unknown_setting_is_refused():
    with pytest.raises(ValidationError, match="horizon_dayz"):
        get_settings(horizon_dayz=30)


def test_every_path_moves_with_the_data_dir(tmp_path):
    settings = get_settings(data_dir=tmp_path / "elsewhere")
    for path in (
        settings.raw_dir,
        settings.validated_dir,
        settings.user_daily_path,
        settings.features_path,
        settings.registry_path,
        settings.ground_truth_dir,
    ):
        assert path.is_relative_to(tmp_path / "elsewhere")


def test_a_cluster_url_naming_a_database_is_refused():
    with pytest.raises(ValidationError, match="does not have"):
        get_settings(redis_url="redis://node-1:7000/3", redis_cluster=True)


def test_yaml_file_is_read_and_env_wins(tmp_path, monkeypatch):
    (tmp_path / "churn.yaml").write_text("horizon_days: 60\nseed: 7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHURN_SEED", "8")
    settings = get_settings()
    assert settings.horizon_days == 60
    assert settings.seed == 8


def test_the_config_file_is_looked_up_when_settings_are_built(tmp_path, monkeypatch):
    # core.settings is imported (above) before the variable is set: it must still count.
    config = tmp_path / "elsewhere.yaml"
    config.write_text("horizon_days: 45\nfeast_project: from_file\n")
    monkeypatch.chdir(tmp_path)  # no ./churn.yaml
    assert get_settings().horizon_days == 30
    monkeypatch.setenv("CHURN_CONFIG_FILE", str(config))
    settings = get_settings()
    assert (settings.horizon_days, settings.feast_project) == (45, "from_file")
    monkeypatch.setenv("CHURN_CONFIG_FILE", str(tmp_path / "none.yaml"))
    assert get_settings().horizon_days == 30  # a missing file: the defaults


def test_severities_from_yaml_where_a_bare_off_is_false(tmp_path, monkeypatch):
    config = tmp_path / "churn.yaml"
    config.write_text("validation_severity:\n  duplicate_events: warn\n  volume: off\n")
    monkeypatch.setenv("CHURN_CONFIG_FILE", str(config))
    assert get_settings().validation_severity == {"duplicate_events": "warn", "volume": "off"}


def test_severities_from_a_comma_list_or_yaml(monkeypatch, tmp_path):
    monkeypatch.setenv("CHURN_VALIDATION_SEVERITY", "duplicate_events=warn, volume=off")
    assert get_settings().validation_severity == {"duplicate_events": "warn", "volume": "off"}
    monkeypatch.delenv("CHURN_VALIDATION_SEVERITY")
    assert get_settings().validation_severity == {}
    assert get_settings(validation_severity={"freshness": "warn"}).validation_severity == {
        "freshness": "warn"
    }


def test_as_env_round_trips(monkeypatch, tmp_path):
    original = get_settings(
        data_dir=tmp_path,
        windows=(5, 50),
        horizon_days=45,
        validation_severity={"duplicate_events": "warn", "volume": "off"},
    )
    for key, value in original.as_env().items():
        monkeypatch.setenv(key, value)
    assert get_settings() == original


def test_an_empty_token_means_no_token(monkeypatch):
    monkeypatch.setenv("CHURN_API_TOKEN", "")
    assert get_settings().api_token is None
    monkeypatch.setenv("CHURN_API_TOKEN", "t0ken")
    assert get_settings().api_token.get_secret_value() == "t0ken"
    assert "t0ken" not in repr(get_settings())


def test_duckdb_cap_stays_within_the_memory_budget():
    """A budget below DuckDB's cap lowers the cap: a stage holds DuckDB's memory too."""
    from core.sql_engine import connect

    assert get_settings(memory_budget="6GB").duckdb_memory_bytes == 3_000_000_000
    small = get_settings(memory_budget="2GiB")
    assert small.duckdb_memory_bytes == 2 * 1024**3
    limit = connect(small).execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit == "2.0 GiB"
