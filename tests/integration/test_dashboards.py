"""The dashboards and alert rules against a real Prometheus, fed by the real exporters.

The suite's trained world with a promoted model; the API (``churn serve``) answers some 200s and
404s; the nightly jobs run as the ``churn`` commands and push to a real Pushgateway;
Prometheus scrapes both every second with the repo's scrape configuration and alert
rules. Then every query of every panel of both dashboards must return series with a
number in them: a panel reading a metric nobody exports, or labels nobody sets, fails.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from core.settings import Settings
from feature_repo.store import open_store
from online_api import server
from tests.deploy.test_alerts import ALERTS, CONFIG, DASHBOARDS, dashboard_queries
from tests.integration.services import free_port, installed, running, wait_until
from tests.integration.test_push import running_pushgateway
from tests.integration.world import TODAY, copy_world
from training.promote import force

pytestmark = pytest.mark.integration

PROMETHEUS = "prometheus"
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
CHURN = str(Path(sys.executable).with_name("churn"))
END = TODAY
# A 1 s scrape: Grafana's $__rate_interval would be a few seconds; a minute is safe.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "1s", "$__range": "1h"}
JOBS = ("churn_features", "churn_materialize", "churn_batch", "churn_estimate", "churn_drift",
        "churn_outcomes", "churn_uplift", "churn_skew", "churn_retrain")  # fmt: skip
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
    evaluation_interval: float  # seconds, from the configuration Prometheus runs with


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


def seconds(duration: str) -> float:
    """A Prometheus duration (``1s``, ``1m30s``, ``500ms``) in seconds."""
    parts = re.findall(r"(\d+)(ms|[smhdwy])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(int(n) * DURATION_UNITS[u] for n, u in parts)


@contextmanager
def running_prometheus(log_dir: Path, config: dict, port: int) -> Iterator[str]:
    """A Prometheus of this test's own on ``port`` (loopback), its TSDB in ``log_dir``."""
    config_path = log_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
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


def prometheus_now(prometheus: str) -> float:
    """Prometheus' own clock (``make test-clock`` moves this process's clock, not its)."""
    return float(query(prometheus, "time()")[0]["value"][0])


def rule_groups(prometheus: str) -> list[dict]:
    with urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=10) as response:
        return json.loads(response.read())["data"]["groups"]


def evaluated_at(group: dict) -> float:
    """When the group was last evaluated, in Unix seconds (year 1 if never)."""
    return datetime.fromisoformat(group["lastEvaluation"]).timestamp()


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
def observed(tmp_path_factory, isolated_settings, trained_world) -> Iterator[Observed]:
    installed(PROMETHEUS)  # skip before building anything when it is missing
    tmp = tmp_path_factory.mktemp("dashboards")
    with ExitStack() as stack:
        gateway = stack.enter_context(running_pushgateway(tmp))
        settings = isolated_settings(tmp, pushgateway_url=gateway)
        stack.callback(lambda: open_store(settings).teardown())
        result = copy_world(trained_world, settings)
        force(settings, result.versions[result.best], "dashboard test")

        api_port, prometheus_port = free_port(), free_port()
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
        config = scrape_config(targets)
        prometheus = stack.enter_context(running_prometheus(tmp, config, prometheus_port))

        sent, statuses = drive_traffic(api)
        assert statuses.get(200, 0) > 0 and statuses.get(404, 0) > 0, statuses

        # The night, as `churn nightly` runs it, plus a batch old enough for outcomes.
        old_batch = END.date() - timedelta(days=settings.horizon_days + 5)
        churn(settings, "features", "build")
        # Dated steps get the world's clock, as `churn nightly --day` pins them.
        churn(settings, "features", "materialize", "--end", f"{END:%Y-%m-%dT%H:%M:%S}")
        churn(settings, "batch", "score", "--as-of", old_batch.isoformat())
        churn(settings, "batch", "score", "--as-of", END.date().isoformat())
        # The old night's estimate, made that night; tonight's after outcomes, so the
        # estimate-vs-realized gauges have a night with both (the night runs estimate
        # before outcomes: it sees the previous night's outcomes).
        churn(settings, "monitor", "estimate", "--as-of", old_batch.isoformat(), ok=(0, 10, 20))
        churn(settings, "monitor", "drift", ok=(0, 10, 20))
        churn(settings, "monitor", "outcomes")
        churn(settings, "monitor", "estimate", ok=(0, 10, 20))
        churn(settings, "monitor", "uplift")
        churn(settings, "monitor", "skew", ok=(0, 3))
        churn(settings, "monitor", "retrain-if-needed")

        wait_until(
            "every job's last success in Prometheus",
            lambda: query(prometheus, "churn_job_last_success_timestamp_seconds"),
            timeout=60,
            interval=0.5,
            done=lambda series: len(series) >= len(JOBS),
        )
        # Fresh traffic, so the rate() panels have something in their window.
        more, _ = drive_traffic(api)
        scoring = f'sum(churn_api_requests_total{{route="{SCORING_ROUTE}"}})'
        wait_until(
            f"Prometheus to scrape all {sent + more} scoring requests",
            lambda: query(prometheus, scoring),
            timeout=60,
            interval=0.5,
            done=lambda r: r and float(r[0]["value"][1]) >= sent + more,
        )
        interval = seconds(config["global"]["evaluation_interval"])
        yield Observed(prometheus, api, tmp, interval)


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

    rules = wait_until(
        "every rule to be evaluated",
        lambda: [rule for group in rule_groups(observed.prometheus) for rule in group["rules"]],
        timeout=30,
        interval=0.5,
        done=lambda rules: rules and all(rule["health"] != "unknown" for rule in rules),
    )
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
    """From when the night's data is in, through a full evaluation interval, no alert of
    ``NEVER_HERE`` is pending or firing: pending ones count, as ``for`` only delays the page
    while the condition is already wrong."""
    names = "|".join(NEVER_HERE)
    since = prometheus_now(observed.prometheus)  # the fixture waited for the data
    interval = observed.evaluation_interval
    wait_until(
        f"every rule group's evaluation {interval:g} s after {since} (Unix s)",
        lambda: {g["name"]: evaluated_at(g) for g in rule_groups(observed.prometheus)},
        timeout=30 * interval,
        interval=interval / 4,
        done=lambda evaluated: evaluated and min(evaluated.values()) >= since + interval,
    )
    groups = rule_groups(observed.prometheus)
    raised = [
        (rule["name"], rule["state"])
        for group in groups
        for rule in group["rules"]
        if rule["name"] in NEVER_HERE and rule["state"] != "inactive"
    ]
    assert not raised, f"alerts raised on a healthy portal: {raised}"
    # And at no evaluation in between: every pending or firing one leaves an ALERTS sample.
    window_ms = int((prometheus_now(observed.prometheus) - since) * 1000)  # inside (since, now]
    alerts = f'ALERTS{{alertname=~"{names}"}}'
    seen = query(observed.prometheus, f"count_over_time({alerts}[{window_ms}ms])")
    assert not seen, f"alerts raised on a healthy portal: {[s['metric'] for s in seen]}"
