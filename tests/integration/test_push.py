"""Job metrics through a real Prometheus Pushgateway, read back from its /metrics."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from churn.cli import app
from core.push import Sample, push
from ingestion.generate import generate_demo_data, write_demo_data
from tests.integration.services import free_port, installed, running

pytestmark = pytest.mark.integration

PUSHGATEWAY = "prometheus-pushgateway"
# What the gateway adds to every group by itself.
GATEWAY_OWN = ("push_time_seconds", "push_failure_time_seconds")


@contextmanager
def running_pushgateway(log_dir: Path) -> Iterator[str]:
    """A pushgateway of this test's own on a free loopback port; its URL. Stopped on exit.

    ``--persistence.file=`` (empty) keeps it in memory: nothing of a test outlives it.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [installed(PUSHGATEWAY), f"--web.listen-address=127.0.0.1:{port}",
               "--persistence.file="]  # fmt: skip
    with running(command, f"{url}/-/ready", log_dir / "pushgateway.log", timeout=15):
        yield url


def pushed_samples(url: str, job: str) -> dict[tuple[str, tuple], float]:
    """``{(name, sorted labels without job/instance): value}`` pushed for ``job``."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("job") != job or sample.name in GATEWAY_OWN:
                continue
            labels = {k: v for k, v in sample.labels.items() if k not in ("job", "instance")}
            out[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return out


def help_texts(url: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {f.name: f.documentation for f in text_string_to_metric_families(text)}


@pytest.fixture
def pushgateway(tmp_path) -> Iterator[str]:
    with running_pushgateway(tmp_path) as url:
        yield url


def test_pushed_samples_read_back_from_the_gateway(pushgateway, make_settings):
    settings = make_settings(pushgateway_url=pushgateway)
    samples = [
        Sample("churn_test_users_scored", 1234, "Users scored"),
        Sample("churn_test_score_quantile", 0.25, "Score quantiles", {"quantile": "0.5"}),
        Sample("churn_test_score_quantile", 0.75, "Score quantiles", {"quantile": "0.9"}),
        Sample("churn_test_model_info", 1, "Model", {"version": "20260501T000000Z-abc"}),
    ]
    assert push(settings, "churn_test", samples) is True
    assert pushed_samples(pushgateway, "churn_test") == {
        ("churn_test_users_scored", ()): 1234.0,
        ("churn_test_score_quantile", (("quantile", "0.5"),)): 0.25,
        ("churn_test_score_quantile", (("quantile", "0.9"),)): 0.75,
        ("churn_test_model_info", (("version", "20260501T000000Z-abc"),)): 1.0,
    }
    assert help_texts(pushgateway)["churn_test_users_scored"] == "Users scored"


def test_a_push_replaces_the_jobs_previous_metrics(pushgateway, make_settings):
    settings = make_settings(pushgateway_url=pushgateway)
    assert push(settings, "churn_test", [Sample("churn_test_old", 1, "gone after the next push")])
    assert push(settings, "churn_other", [Sample("churn_other_kept", 7, "another job")])
    assert push(settings, "churn_test", [Sample("churn_test_new", 2, "the latest run")])
    assert pushed_samples(pushgateway, "churn_test") == {("churn_test_new", ()): 2.0}
    assert pushed_samples(pushgateway, "churn_other") == {("churn_other_kept", ()): 7.0}


def test_an_unreachable_gateway_is_a_warning_not_an_error(make_settings, caplog):
    settings = make_settings(pushgateway_url=f"http://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.WARNING, logger="core.push"):
        assert push(settings, "churn_test", [Sample("churn_test_x", 1, "x")], timeout=2) is False
    assert any(
        r.levelno == logging.WARNING and settings.pushgateway_url in r.getMessage()
        for r in caplog.records
    )


def test_without_a_gateway_url_nothing_is_pushed(make_settings, caplog):
    with caplog.at_level(logging.WARNING, logger="core.push"):
        assert push(make_settings(), "churn_test", [Sample("churn_test_x", 1, "x")]) is False
    assert not caplog.records


def test_the_gateway_is_stopped_on_exit(tmp_path):
    with running_pushgateway(tmp_path) as url:
        assert pushed_samples(url, "churn_test") == {}
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/-/ready", timeout=1)


def test_validation_warnings_reach_the_gateway_with_the_jobs_run(pushgateway, make_settings):
    settings = make_settings(
        pushgateway_url=pushgateway, validation_severity={"duplicate_events": "warn"}
    )
    data = generate_demo_data(n_users=40, days=20, seed=3, start=date(2026, 1, 1))
    repeats = data.events.head(2).assign(event_id=["r1", "r2"])
    write_demo_data(replace(data, events=pd.concat([data.events, repeats])), settings)

    result = CliRunner().invoke(app, ["data", "validate"], env=settings.as_env())
    assert result.exit_code == 0, result.output
    pushed = pushed_samples(pushgateway, "churn_validate")
    rows = ("churn_validation_rule_rows", (("rule", "duplicate_events"), ("severity", "warn")))
    assert pushed[rows] == 4.0  # both rows of each repeated pair
    assert pushed[("churn_validation_warnings", ())] == 1.0
    assert pushed[("churn_validation_dropped_events", ())] == 0.0
    run = ("churn_job_last_success_timestamp_seconds", (("kind", "job_run"),))
    assert run in pushed  # the validate job's run, beside the nightly's other jobs
