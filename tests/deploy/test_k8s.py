"""The Kubernetes manifests (deploy/k8s): both overlays render with kustomize, validate
against the Kubernetes 1.30 schemas, and keep the properties a typo or a forgotten patch
would break: probes, non-root pods, writable paths, the one nightly chain and the bootstrap's
exit codes, selectors, the Redis network policy, the Secret's name and keys, settings the code
accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import typer
import yaml

from churn.cli import app
from core.settings import Settings

KUBECTL = shutil.which("kubectl")
pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) is not on PATH"),
]

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
SECRET_TEMPLATE = K8S / "base" / "secret.example.yaml"
KUBERNETES_VERSION = "1.30.0"
NAMESPACES = {"dev": "churn-dev", "prod": "churn"}
OVERLAYS = tuple(NAMESPACES)
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")
CHURN_IMAGES = ("churn-api", "churn-ml")


def kustomize(path: Path) -> str:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return {overlay: kustomize(K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="module")
def objects(rendered: dict[str, str]) -> dict[str, list[dict]]:
    return {o: [d for d in yaml.safe_load_all(text) if d] for o, text in rendered.items()}


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.safe_load(SECRET_TEMPLATE.read_text())


# --- helpers over rendered objects ---------------------------------------------------


def of_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: list[dict], kind: str, name: str) -> dict:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_template(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def workloads(objs: list[dict]) -> Iterator[tuple[dict, dict]]:
    """(workload, its pod template) for everything that runs pods."""
    for obj in objs:
        if obj["kind"] in WORKLOADS:
            yield obj, pod_template(obj)


def all_containers(pod_spec: dict) -> list[dict]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def is_churn_image(image: str) -> bool:
    return image.rsplit("/", 1)[-1].split(":")[0] in CHURN_IMAGES


def config_data(objs: list[dict]) -> dict[str, str]:
    maps = [
        m for m in of_kind(objs, "ConfigMap") if m["metadata"]["name"].startswith("churn-config")
    ]
    assert len(maps) == 1
    return maps[0]["data"]


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        checks = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }
        if not checks[op]:
            return False
    return True


def bytes_of(quantity: str) -> float:
    """A Kubernetes memory quantity (512Mi, 2Gi) or a DuckDB size (3GB) in bytes."""
    number, unit = re.fullmatch(r"([\d.]+)\s*([KMGT]i?B?)?", quantity).groups()
    powers = {"K": 1, "M": 2, "G": 3, "T": 4}
    if not unit:
        return float(number)
    base = 1024 if "i" in unit else 1000
    return float(number) * base ** powers[unit[0]]


def cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate (offline schemas, strict: unknown fields are errors)."""
    cli = Path(sys.executable).with_name("kubernetes-validate")
    return subprocess.run(
        [str(cli), "-k", KUBERNETES_VERSION, "--strict", "--quiet", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


# --- rendering and schema validation ---------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_objects_valid_for_kubernetes_1_30(overlay, rendered, tmp_path):
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered[overlay])
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {o["kind"] for o in yaml.safe_load_all(rendered[overlay]) if o}
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"} <= kinds
    assert {"PodDisruptionBudget", "CronJob", "PersistentVolumeClaim"} <= kinds


def test_the_schema_check_catches_a_broken_manifest(objects, tmp_path):
    api = named(objects["dev"], "Deployment", "churn-api")
    broken = yaml.safe_load(yaml.safe_dump(api))
    broken["spec"]["replicas"] = "two"
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = validate(path)
    assert result.returncode != 0
    assert "replicas" in result.stdout + result.stderr


def test_the_secret_template_is_valid_and_never_rendered(objects, tmp_path):
    assert validate(SECRET_TEMPLATE).returncode == 0
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    assert SECRET_TEMPLATE.name not in base["resources"]
    for overlay in OVERLAYS:
        assert of_kind(objects[overlay], "Secret") == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_in_the_overlay_namespace_and_labelled(overlay, objects):
    namespace = NAMESPACES[overlay]
    (ns,) = of_kind(objects[overlay], "Namespace")
    assert ns["metadata"]["name"] == namespace
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects[overlay]:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "churn", obj["metadata"]["name"]
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]
    for obj, pod in workloads(objects[overlay]):
        labels = pod["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "churn"
        assert labels["app.kubernetes.io/component"]
        if "selector" in obj["spec"]:  # a selector that misses its own pods is refused
            assert selects(obj["spec"]["selector"], labels), obj["metadata"]["name"]


# --- the API ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_runs_two_replicas_or_more_with_probes_on_its_port(overlay, objects):
    objs = objects[overlay]
    config = config_data(objs)
    api = named(objs, "Deployment", "churn-api")
    assert api["spec"]["replicas"] >= 2
    hpa = named(objs, "HorizontalPodAutoscaler", "churn-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "churn-api"
    assert 2 <= hpa["spec"]["minReplicas"] <= api["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    pdb = named(objs, "PodDisruptionBudget", "churn-api")
    assert pdb["spec"]["minAvailable"] == 1
    assert selects(pdb["spec"]["selector"], pod_template(api)["metadata"]["labels"])

    (container,) = pod_template(api)["spec"]["containers"]
    assert container["command"] == ["churn", "serve"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(config["CHURN_API_PORT"]) == 8000
    assert config["CHURN_API_HOST"] == "0.0.0.0"
    assert config["CHURN_API_WORKERS"] == "1"  # scaled by replicas, one process per pod

    def probe(kind: str) -> tuple[str, int]:
        get = container[kind]["httpGet"]
        return get["path"], ports.get(get["port"], get["port"])

    assert probe("readinessProbe") == ("/ready", 8000)
    assert probe("livenessProbe") == ("/health", 8000)
    assert probe("startupProbe") == ("/health", 8000)
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120

    service = named(objs, "Service", "churn-api")
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("http", 8000, "http")
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000"
    assert annotations["prometheus.io/path"] == "/metrics"


# --- pods: non-root, read-only root, writable paths, resources, images --------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_non_root_with_a_read_only_root_filesystem(overlay, objects):
    for obj, pod in workloads(objects[overlay]):
        name, spec = obj["metadata"]["name"], pod["spec"]
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] != 0, name
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for container in all_containers(spec):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert security["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert security["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert "runAsUser" not in security or security["runAsUser"] != 0
            if is_churn_image(container["image"]):
                assert context["runAsUser"] == 10001, name  # the images' churn user
            if container["image"].startswith("redis:"):
                assert context["runAsUser"] == 999, name  # the official image's redis user


def mounts_of(spec: dict, container: dict) -> dict[str, tuple[dict, bool]]:
    """Mount path → (its volume, writable)."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    return {
        m["mountPath"]: (volumes[m["name"]], not m.get("readOnly", False))
        for m in container.get("volumeMounts", [])
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_what_the_churn_containers_write_lands_on_a_writable_volume(overlay, objects):
    objs = objects[overlay]
    config = config_data(objs)
    data, artifacts = config["CHURN_DATA_DIR"], config["CHURN_ARTIFACTS_DIR"]
    for obj, pod in workloads(objs):
        for container in pod["spec"]["containers"]:
            if not is_churn_image(container["image"]):
                continue
            name = (obj["metadata"]["name"], container["name"])
            mounts = mounts_of(pod["spec"], container)
            env = config | {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
            written = [container["workingDir"], env["HOME"], env["MPLCONFIGDIR"]]
            if "PROMETHEUS_MULTIPROC_DIR" in env:
                written.append(env["PROMETHEUS_MULTIPROC_DIR"])
            for path in written:
                under = [m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")]
                assert under and mounts[under[0]][1], f"{name}: {path} is not on a writable mount"
                assert "emptyDir" in mounts[under[0]][0], f"{name}: {path} should be scratch"
            claims = {p: v["persistentVolumeClaim"]["claimName"] for p, (v, _) in mounts.items()
                      if "persistentVolumeClaim" in v}  # fmt: skip
            assert claims == {data: "churn-data", artifacts: "churn-artifacts"}, name
            api = container["name"] == "api"
            # The API only reads the registries the jobs write; the jobs write both volumes.
            assert mounts[data][1] is not api and mounts[artifacts][1] is not api, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits_and_duckdb_fits_in_the_jobs(overlay, objects):
    objs = objects[overlay]
    config = config_data(objs)
    for obj, pod in workloads(objs):
        for container in all_containers(pod["spec"]):
            name = (obj["metadata"]["name"], container["name"])
            requests, limits = container["resources"]["requests"], container["resources"]["limits"]
            assert cpus(requests["cpu"]) <= cpus(limits["cpu"]), name
            assert bytes_of(requests["memory"]) <= bytes_of(limits["memory"]), name
            if container["image"].split(":")[0] == "churn-ml":
                # DuckDB sees the node, not the limit: its cap must leave room for Python.
                cap = bytes_of(config["CHURN_DUCKDB_MEMORY_LIMIT"])
                assert cap <= 0.6 * bytes_of(limits["memory"]), name
                assert int(config["CHURN_DUCKDB_THREADS"]) <= cpus(limits["cpu"]), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_tagged_and_prod_pins_a_release(overlay, objects):
    for _, pod in workloads(objects[overlay]):
        for container in all_containers(pod["spec"]):
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert name and tag and tag != "latest", image
            if is_churn_image(image):
                if overlay == "dev":
                    assert tag == "dev", image
                else:
                    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), image


# --- references between objects -------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_maps_and_claims_referenced_by_pods_exist(overlay, objects):
    objs = objects[overlay]
    maps = {m["metadata"]["name"] for m in of_kind(objs, "ConfigMap")}
    claims = {c["metadata"]["name"] for c in of_kind(objs, "PersistentVolumeClaim")}
    for obj, pod in workloads(objs):
        claims_here = claims | {
            t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])
        }
        for volume in pod["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims_here
        volumes = {v["name"] for v in pod["spec"].get("volumes", [])}
        volumes |= {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
        for container in all_containers(pod["spec"]):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in maps, obj["metadata"]["name"]
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, (obj["metadata"]["name"], mount["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_selects_pods_that_serve_its_target_port(overlay, objects):
    objs = objects[overlay]
    for service in of_kind(objs, "Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        pods = [pod for _, pod in workloads(objs) if selects(selector, pod["metadata"]["labels"])]
        assert pods, f"Service {service['metadata']['name']} selects no pods"
        for port in service["spec"]["ports"]:
            for pod in pods:
                served = {
                    p.get("name"): p["containerPort"]
                    for c in pod["spec"]["containers"]
                    for p in c.get("ports", [])
                }
                target = port["targetPort"]
                assert target in served or target in served.values(), service["metadata"]["name"]


def secret_references(objs: list[dict]) -> Iterator[tuple[str, str, str | None, bool]]:
    """(workload, secret name, key or None for envFrom/volumes, optional) for every reference."""
    for obj, pod in workloads(objs):
        name = obj["metadata"]["name"]
        for container in all_containers(pod["spec"]):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield name, ref["name"], ref["key"], ref.get("optional", False)
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    ref = source["secretRef"]
                    yield name, ref["name"], None, ref.get("optional", False)
        for volume in pod["spec"].get("volumes", []):
            if "secret" in volume:
                yield name, volume["secret"]["secretName"], None, False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_reference_is_the_documented_secret_and_key(overlay, objects, template):
    objs = objects[overlay]
    refs = list(secret_references(objs))
    assert refs
    keys = set(template["stringData"])
    for workload, secret, key, optional in refs:
        assert secret == template["metadata"]["name"], workload
        assert key is None or key in keys, (workload, key)
        if key in ("CHURN_REDIS_URL", "REDIS_PASSWORD"):
            assert not optional, (workload, key)  # nothing works without them
    users_of_redis_url = {w for w, _, key, _ in refs if key == "CHURN_REDIS_URL"}
    assert users_of_redis_url == {"churn-api"} | {
        c["metadata"]["name"] for c in of_kind(objs, "CronJob")
    }
    token = [opt for w, _, key, opt in refs if (w, key) == ("churn-api", "CHURN_API_TOKEN")]
    assert token == [overlay == "dev"]  # open in dev, required in prod


def test_the_secret_template_is_consistent_with_redis_and_the_settings(objects, template):
    values = template["stringData"]
    url = urlparse(values["CHURN_REDIS_URL"])
    assert url.password == values["REDIS_PASSWORD"]
    redis = named(objects["dev"], "Service", "redis")
    assert (url.hostname, url.port) == ("redis", redis["spec"]["ports"][0]["port"])
    assert Settings(redis_url=values["CHURN_REDIS_URL"]).redis_url == values["CHURN_REDIS_URL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_config_map_holds_settings_the_code_accepts(overlay, objects, monkeypatch):
    objs = objects[overlay]
    config = config_data(objs)
    unknown = {k for k in config if k.startswith("CHURN_")} - {
        f"CHURN_{name.upper()}" for name in Settings.model_fields
    }
    assert not unknown  # an unknown CHURN_ variable is silently ignored: a typo
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert (str(settings.data_dir), str(settings.artifacts_dir)) == ("/data", "/artifacts")
    assert settings.api_workers == 1
    pushgateway = urlparse(settings.pushgateway_url)
    service = named(objs, "Service", pushgateway.hostname)
    assert pushgateway.port == service["spec"]["ports"][0]["port"]


# --- Redis: in-cluster in dev only, reachable by the API and the jobs only ---------------


def test_dev_runs_redis_with_a_persistent_append_only_file(objects):
    objs = objects["dev"]
    (redis,) = of_kind(objs, "StatefulSet")
    assert redis["metadata"]["name"] == "redis"
    assert redis["spec"]["serviceName"] == "redis"
    assert named(objs, "Service", "redis")["spec"]["clusterIP"] == "None"
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    (container,) = pod_template(redis)["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--dir") + 1] == "/data"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]} == {
        "/data": claim["metadata"]["name"]
    }


def test_only_the_api_and_the_jobs_may_reach_redis(objects):
    objs = objects["dev"]
    (policy,) = of_kind(objs, "NetworkPolicy")
    redis = pod_template(named(objs, "StatefulSet", "redis"))["metadata"]["labels"]
    selected = [
        o["metadata"]["name"]
        for o, pod in workloads(objs)
        if selects(policy["spec"]["podSelector"], pod["metadata"]["labels"])
    ]
    assert selected == ["redis"] and selects(policy["spec"]["podSelector"], redis)
    assert "Ingress" in policy["spec"]["policyTypes"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    assert all(set(peer) == {"podSelector"} for peer in rule["from"])  # this namespace only
    allowed = {
        o["metadata"]["name"]
        for o, pod in workloads(objs)
        if any(selects(peer["podSelector"], pod["metadata"]["labels"]) for peer in rule["from"])
    }
    jobs = {c["metadata"]["name"] for c in of_kind(objs, "CronJob")}
    assert allowed == {"churn-api"} | jobs  # not Redis itself, not the Pushgateway


def test_prod_renders_no_redis_of_its_own(objects, rendered):
    objs = objects["prod"]
    assert of_kind(objs, "StatefulSet") == []
    assert of_kind(objs, "NetworkPolicy") == []
    assert "redis" not in {s["metadata"]["name"] for s in of_kind(objs, "Service")}
    for _, pod in workloads(objs):
        assert not any(c["image"].startswith("redis") for c in all_containers(pod["spec"]))
    assert "REDIS_PASSWORD" not in rendered["prod"]
    assert not any("redis" in v for v in config_data(objs).values())


# --- the jobs ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_cron_job_runs_the_night_and_never_overlaps_itself(overlay, objects):
    cronjobs = {c["metadata"]["name"]: c for c in of_kind(objects[overlay], "CronJob")}
    assert set(cronjobs) == {"churn-nightly", "churn-bootstrap"}  # no job chained by the clock
    for name, cron in cronjobs.items():
        spec = cron["spec"]
        assert spec["concurrencyPolicy"] == "Forbid", name
        assert spec["successfulJobsHistoryLimit"] >= 1, name
        assert spec["failedJobsHistoryLimit"] >= 1, name
        assert spec["startingDeadlineSeconds"] > 0, name
        assert spec["timeZone"] == "Etc/UTC", name  # "yesterday" is a UTC day
        assert pod_template(cron)["spec"]["restartPolicy"] == "Never", name
    assert cronjobs["churn-bootstrap"]["spec"]["suspend"] is True  # run by hand only
    nightly = cronjobs["churn-nightly"]["spec"]
    assert not nightly.get("suspend", False)
    # The schedule compose's `churn schedule` keeps, which the alerts' 26 h thresholds assume.
    assert nightly["schedule"] == Settings.model_fields["nightly_cron"].default
    assert nightly["jobTemplate"]["spec"]["activeDeadlineSeconds"] < 24 * 3600  # before the next


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_night_is_churn_nightly_and_prod_ingests_the_portal_export_first(overlay, objects):
    cron = named(objects[overlay], "CronJob", "churn-nightly")
    (container,) = pod_template(cron)["spec"]["containers"]
    assert container["command"] == ["churn", "nightly"]  # one chain, stopping at a failure
    args = container.get("args", [])
    if overlay == "prod":
        assert args == ["--users-file", "/data/incoming/users.parquet",
                        "--events-file", "/data/incoming/events.parquet"]  # fmt: skip
    else:
        assert args == []  # dev validates the demo's raw tables
    nightly = typer.main.get_command(app).commands["nightly"]
    options = {o for p in nightly.params for o in p.opts}
    assert {a for a in args if a.startswith("--")} <= options


# The bootstrap's shell script, run for real with /bin/sh and a `churn` that records its
# arguments and exits with the code the test gives each sub-command.
FAKE_CHURN = """#!/bin/sh
echo "$*" >> "$CALLS"
code=$(sed -n "s/^$1 $2=//p" "$CODES" | head -n 1)
[ -n "$code" ] || code=$(sed -n "s/^$1=//p" "$CODES" | head -n 1)
exit "${code:-0}"
"""


def run_script(
    objs: list[dict], cronjob: str, tmp_path: Path, codes: dict[str, int]
) -> tuple[int, list[str], str]:
    """Run the CronJob's container command as its pod would: (exit code, churn calls, output)."""
    (container,) = pod_template(named(objs, "CronJob", cronjob))["spec"]["containers"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "churn").write_text(FAKE_CHURN)
    (bin_dir / "churn").chmod(0o755)
    calls, codes_file = tmp_path / "calls", tmp_path / "codes"
    calls.write_text("")
    codes_file.write_text("".join(f"{k}={v}\n" for k, v in codes.items()))
    env = config_data(objs) | {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env |= {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CHURN_DATA_DIR": str(tmp_path / "data"),
        "CHURN_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "CALLS": str(calls),
        "CODES": str(codes_file),
    }
    result = subprocess.run(
        container["command"] + container["args"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return result.returncode, calls.read_text().splitlines(), result.stdout + result.stderr


def test_bootstrap_builds_everything_once_then_only_reloads(objects, tmp_path):
    code, calls, output = run_script(objects["dev"], "churn-bootstrap", tmp_path, {})
    assert code == 0, output
    assert calls == [
        "data generate --users 2000 --days 120",
        "data validate",
        "data prepare",
        "features build",
        "features apply",
        "train",
        "promote",
        "features materialize",
    ]
    code, calls, output = run_script(objects["dev"], "churn-bootstrap", tmp_path, {"promote": 3})
    assert code == 3
    assert calls[-1] == "promote"  # no model promoted: stop, do not report success
    assert "no model promoted" in output

    models = tmp_path / "artifacts" / "models"
    models.mkdir(parents=True)
    (models / "production.json").write_text("{}")
    code, calls, output = run_script(objects["dev"], "churn-bootstrap", tmp_path, {})
    assert code == 0, output
    assert calls == ["features apply", "features materialize"]  # no data or model changed


def test_prod_bootstrap_ingests_the_portal_export(objects, tmp_path):
    code, calls, output = run_script(objects["prod"], "churn-bootstrap", tmp_path, {})
    assert code == 0, output
    assert calls[0] == (
        "data ingest --users-file /data/incoming/users.parquet"
        " --events-file /data/incoming/events.parquet"
    )
    assert "data generate" not in " ".join(calls)
