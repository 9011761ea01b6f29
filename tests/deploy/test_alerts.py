"""Alert rules and dashboards, checked offline: promtool on the rules and their unit tests,
and the contract of the dashboard JSON (datasource by fixed uid, valid PromQL, metric
names the code exports). tests/integration/test_dashboards.py runs the same queries
against a real Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
# Grafana's own variables, with the values a 15 s scrape interval would give them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# Where the metric names live: the API's metrics and every job that pushes.
EXPORTERS = ("online_api", "batch", "monitor", "churn")
SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_total")
EXPECTED_ALERTS = {
    "ChurnApiDown", "ChurnApiAbsent", "ChurnApi5xxRatioHigh", "ChurnApiP99LatencyHigh",
    "ChurnOnlineStoreUnreachable", "ChurnFeaturesStale", "ChurnOnlineOfflineMismatch",
    "ChurnNightlyStepFailed", "ChurnNightlyJobMissed", "ChurnNightlyJobNeverSucceeded",
    "ChurnFeatureDriftAlert",
    "ChurnRealizedPrAucLow", "ChurnEstimatedPrAucLow", "ChurnModelMiscalibrated",
    "ChurnRateOffTheModel", "ChurnOutreachNotWorking",
}  # fmt: skip


def load_dashboard(path: Path) -> dict:
    return json.loads(path.read_text())


def data_panels(dashboard: dict) -> list[dict]:
    """Every panel that queries (rows hold none), collapsed rows' panels included."""
    panels = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            panels += panel.get("panels", [])
        else:
            panels.append(panel)
    return panels


def to_promql(expr: str, variables: dict[str, str] = GRAFANA_VARIABLES) -> str:
    """A panel's expression as Prometheus receives it from Grafana; ValueError if a
    variable is left that Grafana would have had to fill in."""
    for name, value in variables.items():
        expr = expr.replace("${" + name[1:] + "}", value).replace(name, value)
    if "$" in expr:
        raise ValueError(f"unsubstituted Grafana variable in {expr!r}")
    return expr


def dashboard_queries(
    path: Path, variables: dict[str, str] = GRAFANA_VARIABLES
) -> list[tuple[str, str, str]]:
    """``(panel title, refId, PromQL)`` of every target of the dashboard at ``path``."""
    return [
        (panel["title"], target["refId"], to_promql(target["expr"], variables))
        for panel in data_panels(load_dashboard(path))
        for target in panel["targets"]
    ]


def alert_rules() -> dict[str, dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def metric_names(promql: str) -> set[str]:
    """The ``churn_*`` metric names a query reads (label values are not names)."""
    return set(re.findall(r"\b(churn_[a-z0-9_]+)\b", re.sub(r'"[^"]*"', '""', promql)))


def exported_names() -> set[str]:
    """Every ``churn_*`` string literal in the exporting packages: the metric names."""
    names: set[str] = set()
    for package in EXPORTERS:
        for source in (REPO / package).rglob("*.py"):
            names |= set(re.findall(r"[\"'](churn_[a-z0-9_]+)[\"']", source.read_text()))
    return names


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (the system deps install prometheus)")
    return path


def run_promtool(*args: str) -> str:
    done = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_prometheus_config_is_valid():
    assert "SUCCESS" in run_promtool("check", "config", str(CONFIG))


def test_alert_rules_are_valid():
    output = run_promtool("check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in output


def test_alert_unit_tests_pass():
    assert "SUCCESS" in run_promtool("test", "rules", str(ALERTS_TEST))


def test_every_expected_alert_is_defined_with_severity_and_runbook():
    rules = alert_rules()
    assert set(rules) == EXPECTED_ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), name
        assert all(annotations[key].strip() for key in ("summary", "description", "runbook"))


def test_every_alert_is_tested_firing_and_silent():
    cases = [
        case
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert fires == EXPECTED_ALERTS, EXPECTED_ALERTS - fires
    assert silent == EXPECTED_ALERTS, EXPECTED_ALERTS - silent


def test_rules_name_the_scrape_jobs_of_the_config():
    config = yaml.safe_load(CONFIG.read_text())
    jobs = {c["job_name"]: c for c in config["scrape_configs"]}
    for name, rule in alert_rules().items():
        for job in re.findall(r'up\{job="([^"]+)"\}', rule["expr"]):
            assert job in jobs, f"{name} reads job {job!r}, the config scrapes {sorted(jobs)}"
    # The jobs' own job label (churn_batch, ...) must survive the scrape.
    assert jobs["pushgateway"]["honor_labels"] is True
    assert config["rule_files"] == [ALERTS.name]


def test_alerts_read_only_exported_metrics():
    exported = exported_names()
    for name, rule in alert_rules().items():
        for metric in metric_names(rule["expr"]):
            assert _exported(metric, exported), f"{name} reads {metric}, which nothing exports"


def test_grafana_datasource_has_the_uid_the_dashboards_use():
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert [(d["uid"], d["type"]) for d in provisioned] == [("prometheus", "prometheus")]
    assert provisioned[0]["url"] == "http://prometheus:9090"


def test_the_two_dashboards_are_provisioned():
    assert {load_dashboard(p)["uid"] for p in DASHBOARDS} == {"churn-api", "churn-model"}
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    )["providers"]
    assert [p["type"] for p in providers] == ["file"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_uses_the_provisioned_datasource_and_no_inputs(path):
    text = path.read_text()
    assert "${DS_" not in text and "__inputs" not in text
    board = json.loads(text)
    assert board["schemaVersion"] >= 36
    panels = data_panels(board)
    assert panels
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, (panel["title"], target["refId"])
            assert target["expr"].strip(), (panel["title"], target["refId"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_panel_ids_are_unique_and_panels_do_not_overlap(path):
    panels = load_dashboard(path)["panels"]
    ids = [p["id"] for p in panels] + [c["id"] for p in panels for c in p.get("panels", [])]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_queries_are_valid_promql(path, tmp_path):
    """promtool parses each query as a recording rule: a typo fails here, not in Grafana."""
    uid = load_dashboard(path)["uid"].replace("-", "_")
    rules = [
        {"record": f"dashboard:{uid}:query_{i}", "expr": expr}
        for i, (_, _, expr) in enumerate(dashboard_queries(path))
    ]
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": uid, "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run_promtool("check", "rules", str(rules_file))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_reads_only_exported_metrics(path):
    exported = exported_names()
    for title, ref, expr in dashboard_queries(path):
        names = metric_names(expr)
        assert names or "up{" in expr, f"{title} {ref} reads no churn metric"
        for metric in names:
            assert _exported(metric, exported), f"{title} {ref}: nothing exports {metric}"


def test_grafana_variables_are_substituted_or_refused():
    assert to_promql("rate(x[$__rate_interval])") == "rate(x[1m])"
    assert to_promql("increase(x[${__range}])", {"$__range": "6h"}) == "increase(x[6h])"
    with pytest.raises(ValueError, match="instance"):
        to_promql('x{instance="$instance"}')


def _exported(metric: str, exported: set[str]) -> bool:
    bases = [metric] + [metric.removesuffix(s) for s in SERIES_SUFFIXES if metric.endswith(s)]
    return any(base in exported for base in bases)


def test_the_drift_alert_leaves_out_exactly_the_features_that_age():
    """The alert's matcher, the setting's default and the spec name the same features."""
    from core.settings import get_settings
    from feature_repo.spec import ageing_features, feature_names
    from monitor.drift import ignored_features

    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    expr = next(
        rule["expr"]
        for group in rules["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "ChurnFeatureDriftAlert"
    )
    matcher = re.search(r'feature!~"([^"]+)"', expr).group(1)
    names = feature_names((7, 14, 30))
    left_out = {n for n in names if re.fullmatch(matcher, n)}  # PromQL regexes are anchored
    assert left_out == set(ageing_features())
    assert ignored_features(get_settings()) == ageing_features()
    assert "days_since_last_activity" not in left_out  # recency is the model's first signal


def test_the_realized_alert_and_panel_use_the_retraining_floor():
    """Alert, dashboard line and CHURN_REALIZED_PR_AUC_SKILL_FLOOR's default agree, on skill:
    a lift floor could never be met once half the users churn."""
    from core.settings import get_settings

    floor = get_settings().realized_pr_auc_skill_floor
    expr = alert_rules()["ChurnRealizedPrAucLow"]["expr"]
    threshold = re.fullmatch(r"churn_realized_pr_auc_skill < ([0-9.]+)", expr.strip())
    assert threshold and float(threshold.group(1)) == floor, expr
    model = next(p for p in DASHBOARDS if p.stem == "churn-model")
    panel = next(
        p for p in data_panels(load_dashboard(model)) if p["title"] == "Realized PR-AUC skill"
    )
    assert [t["expr"] for t in panel["targets"]] == ["churn_realized_pr_auc_skill"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, floor]
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"


def test_the_outreach_alert_and_panel_use_the_alert_horizons():
    """The job turns CHURN_UPLIFT_ALERT_HORIZONS into the flag the alert reads (no threshold
    in the rule to keep in step); the dashboard's stat turns red at the same count, and the
    nightly jobs the absent() rule names include the uplift."""
    from core.settings import get_settings

    horizons = get_settings().uplift_alert_horizons
    rules = alert_rules()
    assert rules["ChurnOutreachNotWorking"]["expr"].strip() == (
        "churn_uplift_outreach_not_working == 1"
    )
    assert 'job="churn_uplift"' in rules["ChurnNightlyJobNeverSucceeded"]["expr"]
    model = next(p for p in DASHBOARDS if p.stem == "churn-model")
    panel = next(
        p
        for p in data_panels(load_dashboard(model))
        if p["title"] == "Horizons outreach not working"
    )
    assert [t["expr"] for t in panel["targets"]] == ["churn_uplift_horizons_not_working"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": horizons}


def test_the_estimate_alert_and_panels_follow_the_settings_through_the_job():
    """The job turns CHURN_ESTIMATE_ALERT_NIGHTS and the skill floor into the flag the alert
    reads and the floor the panel draws, so no threshold is written in the rule or the
    dashboard; the calibration rule compares with the threshold pushed beside the error."""
    rules = alert_rules()
    assert rules["ChurnEstimatedPrAucLow"]["expr"].strip() == "churn_estimate_skill_low == 1"
    assert rules["ChurnModelMiscalibrated"]["expr"].strip() == (
        "churn_outcomes_calibration_error > on(job) group_left "
        "churn_outcomes_calibration_error_threshold"
    )
    # The level's verdict is the job's (monitor.calibration.Level.off): no threshold here.
    assert rules["ChurnRateOffTheModel"]["expr"].strip() == (
        "churn_outcomes_churn_rate_ratio and on(job, model_version) "
        "churn_outcomes_calibration_level_off == 1"
    )
    assert 'job="churn_estimate"' in rules["ChurnNightlyJobNeverSucceeded"]["expr"]
    model = next(p for p in DASHBOARDS if p.stem == "churn-model")
    panels = {p["title"]: p for p in data_panels(load_dashboard(model))}
    skill = [t["expr"] for t in panels["Estimated PR-AUC skill"]["targets"]]
    assert skill == ["churn_estimate_pr_auc_skill", "churn_estimate_pr_auc_skill_lower",
                     "churn_estimate_pr_auc_skill_upper", "churn_estimate_pr_auc_skill_floor"]  # fmt: skip
    versus = [t["expr"] for t in panels["Estimated vs realized, same night"]["targets"]]
    assert versus == ["churn_estimate_checked_pr_auc", "churn_estimate_checked_precision_at_k"]
    calibration = [t["expr"] for t in panels["Calibration error"]["targets"]]
    assert calibration == ["churn_outcomes_calibration_error",
                           "churn_outcomes_calibration_error_threshold"]  # fmt: skip
