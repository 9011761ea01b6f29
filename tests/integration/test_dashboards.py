"""The dashboards and alert rules against a real Prometheus, fed by the real exporters.

A small portal with a promoted model; the API (``churn serve``) answers some 200s and
404s; the nightly jobs run as the ``churn`` commands and push to a real Pushgateway;
Prometheus scrapes both every second with the repo's scrape configuration and alert
rules. Then every query of every panel of both dashboards must return series with a
number in them: a panel reading a metric nobody exports, or labels nobody sets, fails.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
import yaml

from churn.settings import Settings
from feature_repo.store import open_store
from online_api import server
from tests.deploy.test_alerts import ALERTS, CONFIG, DASHBOARDS, dashboard_queries
from tests.integration.services import installed, running
from tests.integration.test_push import running_pushgateway
from tests.integration.world import TODAY, build_world
from training.promote import force
from training.train import train_models

pytestmark = pytest.mark.integration
T = TypeVar("T")

PROMETHEUS = "prometheus"
CHURN = str(Path(sys.executable).with_name("churn"))
END = TODAY
USERS, DAYS = 300, 120
# A 1 s scrape: Grafana's $__rate_interval would be a few seconds; a minute is safe.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "1s", "$__range": "1h"}
JOBS = ("churn_features", "churn_materialize", "churn_batch", "churn_drift",
        "churn_outcomes", "churn_skew", "churn_retrain")  # fmt: skip
SCORING_ROUTE = "/users/{user_id}/churn-risk"
# What a healthy portal after a complete night must not raise, not even as pending.
NEVER_HERE = ("ChurnApiDown", "ChurnApiAbsent", "ChurnApi5xxRatioHigh",
              "ChurnOnlineStoreUnreachable", "ChurnFeaturesStale", "ChurnNightlyJobMissed",
              "ChurnNightlyJobNeverSucceeded")  # fmt: skip


@dataclass
class Observed:
    prometheus: str  # base URL
    api: str
    log_dir: Path


def scrape_config(targets: dict[str, str]) -> dict:
    """The repo's prometheus.yml with its compose targets moved to loopback, a 1 s scrape
    and the repo's alert rules: the job names and honor_labels are the shipped ones."""
    config = yaml.safe_load(CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ALERTS)]
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            unknown = set(static["targets"]) - set(targets)
            assert not unknown, f"prometheus.yml scrapes {unknown}: map them in this test"
            static["targets"] = [targets[t] for t in static["targets"]]
    return config


@contextmanager
def running_prometheus(log_dir: Path, targets: dict[str, str], port: int) -> Iterator[str]:
    """A Prometheus of this test's own on ``port`` (loopback), its TSDB in ``log_dir``."""
    config_path = log_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(scrape_config(targets)))
    url = f"http://127.0.0.1:{port}"
    command = [installed(PROMETHEUS), f"--config.file={config_path}",
               f"--storage.tsdb.path={log_dir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    with running(command, f"{url}/-/ready", log_dir / "prometheus.log"):
        yield url


def query(prometheus: str, promql: str) -> list[dict]:
    """An instant query at now: the result vector (ValueError with Prometheus' error)."""
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{promql!r}: {exc.read().decode(errors='replace')}") from exc
    data = body["data"]
    return data["result"] if data["resultType"] == "vector" else [{"value": data["result"]}]


def eventually(check: Callable[[], T], timeout: float) -> T | None:
    """Poll ``check()`` until it returns something truthy (then that), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)
    return result


def wait_for(what: str, check: Callable[[], T], timeout: float = 60) -> T:
    result = eventually(check, timeout)
    if result is None:
        pytest.fail(f"waited {timeout:.0f} s for {what}")
    return result


def churn(settings: Settings, *args: str, ok: tuple[int, ...] = (0,)) -> None:
    """``churn <args>`` as the scheduler runs it; exit codes in ``ok`` are findings."""
    done = subprocess.run(
        [CHURN, *args], env=os.environ | settings.as_env(), capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert done.returncode in ok, (
        f"churn {' '.join(args)} exited {done.returncode}:\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )


def drive_traffic(api: str) -> tuple[int, dict[int, int]]:
    """Scoring requests for known and unknown users, and one batch; (GETs sent, by status)."""
    statuses: dict[int, int] = {}
    ids = [f"u{i:06d}" for i in range(1, 41)] + [f"nobody-{i}" for i in range(10)]
    for user in ids:
        status, _ = server.get_json(f"{api}/users/{user}/churn-risk")
        statuses[status] = statuses.get(status, 0) + 1
    body = json.dumps({"user_ids": ids[:20]}).encode()
    request = urllib.request.Request(
        f"{api}/churn-risk:batch", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    return len(ids), statuses


@pytest.fixture(scope="module")
def observed(tmp_path_factory, isolated_settings) -> Iterator[Observed]:
    installed(PROMETHEUS)  # skip before building anything when it is missing
    tmp = tmp_path_factory.mktemp("dashboards")
    with ExitStack() as stack:
        gateway = stack.enter_context(running_pushgateway(tmp))
        settings = isolated_settings(tmp, pushgateway_url=gateway)
        stack.callback(lambda: open_store(settings).teardown())
        build_world(settings, users=USERS, days=DAYS, end=END)
        result = train_models(settings, now=END)
        force(settings, result.versions[result.best], "dashboard test")

        api_port, prometheus_port = server.free_port(), server.free_port()
        api = f"http://127.0.0.1:{api_port}"
        api_log = tmp / "api.log"
        process = server.start(settings, api_port, api_log)
        stack.callback(server.stop, process)
        server.wait_ready(api, process, api_log)
        targets = {
            "api:8000": f"127.0.0.1:{api_port}",
            "pushgateway:9091": gateway.removeprefix("http://"),
            "localhost:9090": f"127.0.0.1:{prometheus_port}",
        }
        prometheus = stack.enter_context(running_prometheus(tmp, targets, prometheus_port))

        sent, statuses = drive_traffic(api)
        assert statuses.get(200, 0) > 0 and statuses.get(404, 0) > 0, statuses

        # The night, as `churn nightly` runs it, plus a batch old enough for outcomes.
        old_batch = END.date() - timedelta(days=settings.horizon_days + 5)
        churn(settings, "features", "build")
        # Dated steps get the world's clock, as `churn nightly --day` pins them.
        churn(settings, "features", "materialize", "--end", f"{END:%Y-%m-%dT%H:%M:%S}")
        churn(settings, "batch", "score", "--as-of", old_batch.isoformat())
        churn(settings, "batch", "score", "--as-of", END.date().isoformat())
        churn(settings, "monitor", "drift", ok=(0, 10, 20))
        churn(settings, "monitor", "outcomes")
        churn(settings, "monitor", "skew", ok=(0, 3))
        churn(settings, "monitor", "retrain-if-needed")

        wait_for(
            "every job's last success in Prometheus",
            lambda: len(query(prometheus, "churn_job_last_success_timestamp_seconds")) >= len(JOBS),
        )
        # Fresh traffic, so the rate() panels have something in their window.
        more, _ = drive_traffic(api)
        scoring = f'sum(churn_api_requests_total{{route="{SCORING_ROUTE}"}})'
        wait_for(
            f"Prometheus to scrape all {sent + more} scoring requests",
            lambda: (r := query(prometheus, scoring)) and float(r[0]["value"][1]) >= sent + more,
        )
        yield Observed(prometheus, api, tmp)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_query_returns_series(observed, path):
    failures = []
    for title, ref, promql in dashboard_queries(path, VARIABLES):
        result = query(observed.prometheus, promql)
        values = [float(series["value"][1]) for series in result]
        if not result:
            failures.append(f"{title} [{ref}] returns no series: {promql}")
        elif all(math.isnan(v) for v in values):
            failures.append(f"{title} [{ref}] returns only NaN: {promql}")
    assert not failures, "\n".join(failures)


def test_alert_rules_are_loaded_and_healthy(observed):
    expected = {
        rule["alert"]
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
    }

    def evaluated() -> list[dict]:
        with urllib.request.urlopen(f"{observed.prometheus}/api/v1/rules", timeout=10) as r:
            groups = json.loads(r.read())["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if all(rule["health"] != "unknown" for rule in rules) else []

    rules = wait_for("every rule to be evaluated", evaluated, timeout=30)
    assert {r["name"] for r in rules if r["type"] == "alerting"} == expected
    unhealthy = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not unhealthy


def test_both_targets_are_scraped_and_jobs_keep_their_labels(observed):
    up = {s["metric"]["job"]: s["value"][1] for s in query(observed.prometheus, "up")}
    assert up.get("churn-api") == "1" and up.get("pushgateway") == "1", up
    pushed = query(observed.prometheus, "churn_job_last_success_timestamp_seconds")
    assert {s["metric"]["job"] for s in pushed} == set(JOBS)
    durations = query(observed.prometheus, "churn_job_duration_seconds")
    assert {s["metric"]["job"] for s in durations} == set(JOBS)


def test_a_healthy_night_raises_no_availability_or_freshness_alert(observed):
    selector = f'ALERTS{{alertname=~"{"|".join(NEVER_HERE)}"}}'

    # Pending ones count: "for" only delays the page, the condition is already wrong.
    if eventually(lambda: not query(observed.prometheus, selector), timeout=15) is None:
        raised = [s["metric"] for s in query(observed.prometheus, selector)]
        pytest.fail(f"alerts raised on a healthy portal: {raised}")
