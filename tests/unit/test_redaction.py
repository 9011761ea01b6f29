"""Passwords never shown: URLs and DSNs in messages, the settings, log lines, run records."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from core.push import Sample, push
from core.redaction import RedactingFormatter, redact
from core.settings import get_settings
from ingestion.postgres_source import PostgresSource


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://root:s3cret@db:5432/portal", "postgresql://root:***@db:5432/portal"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://user:s3cret@cache:6380/1", "rediss://user:***@cache:6380/1"),
        ("postgresql+psycopg://feast:s3cret@pg/feast", "postgresql+psycopg://feast:***@pg/feast"),
        # urllib's reading: the password runs to the last @ of the host part
        ("postgresql://root:s3@cret@db/portal", "postgresql://root:***@db/portal"),
        (
            "postgresql://root@db/portal?sslmode=require&password=s3cret&x=1",
            "postgresql://root@db/portal?sslmode=require&password=***&x=1",
        ),
        (
            "host=db user=root password=s3cret dbname=portal",
            "host=db user=root password=*** dbname=portal",
        ),
        ("host=db password='s3 cret' dbname=portal", "host=db password=*** dbname=portal"),
        ("cache:6379,db=0,password=s3cret,username=u", "cache:6379,db=0,password=***,username=u"),
        ("PGPASSWORD=s3cret churn data ingest", "PGPASSWORD=*** churn data ingest"),
        (
            "got 'redis://:s3cret@cache:6379/3', a database",
            "got 'redis://:***@cache:6379/3', a database",
        ),
        # nothing secret: left as it is
        ("postgresql://root@db:5432/portal", "postgresql://root@db:5432/portal"),
        ("redis://:@redis:6379/0", "redis://:@redis:6379/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("dir:///var/landing", "dir:///var/landing"),
        ("3 users, 2026-01-01 … 2026-02-01", "3 users, 2026-01-01 … 2026-02-01"),
    ],
)
def test_passwords_show_as_stars_and_the_rest_stays_readable(text, shown):
    assert redact(text) == shown


def test_the_settings_as_shown_hide_every_password_and_the_token():
    settings = get_settings(
        source="postgresql://root:s3cret@db:5432/portal",
        redis_url="redis://:s3cret@cache:6379/0",
        feast_registry_url="postgresql+psycopg://feast:s3cret@pg/feast",
        api_token="t0ken-s3cret",
    )
    shown = settings.as_env(redacted=True)
    assert "s3cret" not in "".join(shown.values())
    assert shown["CHURN_SOURCE"] == "postgresql://root:***@db:5432/portal"
    assert shown["CHURN_REDIS_URL"] == "redis://:***@cache:6379/0"
    assert shown["CHURN_FEAST_REGISTRY_URL"] == "postgresql+psycopg://feast:***@pg/feast"
    assert shown["CHURN_API_TOKEN"] == "***"
    # What a subprocess gets is the real thing.
    assert settings.as_env()["CHURN_SOURCE"] == "postgresql://root:s3cret@db:5432/portal"
    assert "s3cret" not in repr(settings)  # a traceback may show the settings


def test_a_bad_redis_url_is_refused_without_showing_its_password():
    for values in (
        {"redis_url": "http://:s3cret@cache:6379/0"},
        {"redis_url": "redis://:s3cret@cache:7000/3", "redis_cluster": True},
    ):
        with pytest.raises(ValidationError) as refused:
            get_settings(**values)
        assert "s3cret" not in str(refused.value)
        assert ":***@cache" in str(refused.value)


def test_log_lines_hide_passwords():
    formatter = RedactingFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord(
        "churn",
        logging.WARNING,
        __file__,
        1,
        "reading %s failed",
        ("postgresql://root:s3cret@db/portal",),
        None,
    )
    assert formatter.format(record) == "WARNING reading postgresql://root:***@db/portal failed"


def test_the_pushgateway_warning_hides_its_password(caplog):
    settings = get_settings(pushgateway_url="http://jobs:s3cret@pushgateway.invalid:9091")
    with caplog.at_level(logging.WARNING, logger="core.push"):
        assert not push(settings, "churn_test", [Sample("x", 1.0, "x")], timeout=1)
    assert "http://jobs:***@pushgateway.invalid:9091" in caplog.text
    assert "s3cret" not in caplog.text


def test_the_source_state_names_the_source_without_its_password(make_settings):
    """``raw/source_state.json`` keeps each source's mark under this name."""
    url = "postgresql://root:s3cret@db:5432/portal"
    name = PostgresSource.from_settings(make_settings(source=url), url).name
    assert name == "postgresql://root@db:5432/portal (events)"
