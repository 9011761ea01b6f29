"""feature_store.yaml's values from the settings: the Redis connection string, the engine's
blocks, the variables the file uses and the environment plain ``feast`` gets."""

from __future__ import annotations

import re

import pytest

from core.settings import get_settings, known_variables
from feature_repo.config import (
    FEATURE_STORE_YAML,
    feast_environment,
    filled_config,
    offline_store,
    redis_connection_string,
    yaml_variables,
)


@pytest.mark.parametrize(
    ("url", "connection"),
    [
        ("redis://127.0.0.1:6379/0", "127.0.0.1:6379,db=0"),
        ("redis://cache:6380", "cache:6380,db=0"),
        ("redis://:s3cret@cache:6379/2", "cache:6379,db=2,password=s3cret"),
        (
            "rediss://user:pw@cache.example:6380/1",
            "cache.example:6380,db=1,password=pw,username=user,ssl=true",
        ),
    ],
)
def test_redis_url_becomes_feast_connection_string(url, connection):
    assert redis_connection_string(get_settings(redis_url=url)) == connection


def test_serving_connection_has_client_timeouts():
    connection = redis_connection_string(get_settings(), timeout_ms=100)
    assert connection.endswith(",socket_timeout=0.1,socket_connect_timeout=0.1,retry=null")


def test_a_cluster_connection_has_no_database_and_no_retry_argument():
    # redis-py's cluster client refuses `db` and `retry=None`.
    settings = get_settings(redis_url="rediss://:pw@node-1:7000", redis_cluster=True)
    assert redis_connection_string(settings) == "node-1:7000,password=pw,ssl=true"
    assert redis_connection_string(settings, timeout_ms=100).endswith(
        ",socket_timeout=0.1,socket_connect_timeout=0.1,cluster_error_retry_attempts=0"
    )
    assert yaml_variables(settings)["CHURN_FEAST_REDIS_TYPE"] == "redis_cluster"
    assert yaml_variables(get_settings())["CHURN_FEAST_REDIS_TYPE"] == "redis"


def test_the_offline_store_follows_the_engine():
    assert offline_store(get_settings()) == {"type": "duckdb"}
    spark = offline_store(get_settings(engine="spark", spark_driver_memory="6g"))
    assert spark["type"] == "spark"
    assert spark["spark_conf"]["spark.driver.memory"] == "6g"
    assert spark["spark_conf"]["spark.sql.session.timeZone"] == "UTC"


def test_the_registry_moves_with_the_data_dir_or_goes_to_sql(tmp_path):
    settings = get_settings(data_dir=tmp_path)
    assert yaml_variables(settings)["CHURN_FEAST_REGISTRY"] == str(tmp_path / "feast/registry.db")
    assert yaml_variables(settings)["CHURN_FEAST_REGISTRY_TYPE"] == "file"
    sql = yaml_variables(get_settings(feast_registry_url="postgresql+psycopg://u@db/feast"))
    assert (sql["CHURN_FEAST_REGISTRY_TYPE"], sql["CHURN_FEAST_REGISTRY"]) == (
        "sql",
        "postgresql+psycopg://u@db/feast",
    )


def test_every_variable_of_the_yaml_has_a_value_and_no_other():
    used = set(re.findall(r"\$\{(\w+)\}", FEATURE_STORE_YAML.read_text(encoding="utf-8")))
    assert used == set(yaml_variables(get_settings()))


def test_the_filled_yaml_carries_the_settings(tmp_path):
    settings = get_settings(
        data_dir=tmp_path, feast_project="p1", online_key_ttl_days=2, redis_url="redis://r:1/3"
    )
    config = filled_config(settings, redis_timeout_ms=250)
    assert config["project"] == "p1"
    assert config["registry"]["path"] == str(settings.registry_path)
    assert config["offline_store"] == {"type": "duckdb"}
    assert config["batch_engine"] == {"type": "local"}
    online = config["online_store"]
    assert online["key_ttl_seconds"] == 2 * 86400
    assert online["connection_string"].startswith("r:1,db=3,socket_timeout=0.25,")


def test_plain_feast_gets_the_settings_and_the_yaml_variables(tmp_path):
    """The definitions read the settings from the environment; the yaml its variables."""
    settings = get_settings(data_dir=tmp_path, windows=(5, 50))
    env = feast_environment(settings)
    assert env["CHURN_DATA_DIR"] == str(tmp_path)
    assert env["CHURN_WINDOWS"] == "5,50"
    assert env["CHURN_ONLINE_KEY_TTL_SECONDS"] == str(14 * 86400)
    assert env.keys() == settings.as_env().keys() | yaml_variables(settings).keys()


def test_the_feast_variables_are_known_to_the_settings_check(monkeypatch, tmp_path):
    """Plain feast (the activated virtualenv, `churn features apply`) runs with them set, and
    the definitions build the settings there: an unknown CHURN_* name would stop them."""
    settings = get_settings(data_dir=tmp_path)
    assert yaml_variables(settings).keys() <= known_variables()
    for key, value in feast_environment(settings).items():
        monkeypatch.setenv(key, value)
    assert get_settings() == settings


def test_the_environment_as_shown_hides_the_redis_and_registry_passwords(tmp_path):
    settings = get_settings(
        data_dir=tmp_path,
        redis_url="redis://:s3cret@cache:6379/0",
        feast_registry_url="postgresql+psycopg://feast:s3cret@pg/feast",
    )
    shown = feast_environment(settings, redacted=True)
    assert shown.keys() == feast_environment(settings).keys()
    assert "s3cret" not in "".join(shown.values())
    assert shown["CHURN_FEAST_REDIS"] == "cache:6379,db=0,password=***"
    assert shown["CHURN_FEAST_REGISTRY"] == "postgresql+psycopg://feast:***@pg/feast"
