"""The Kubernetes manifests (deploy/k8s): both overlays render with kustomize, validate
against the Kubernetes 1.30 schemas, and keep the properties a typo or a forgotten patch
would break: probes, non-root pods, writable paths, the one nightly chain, the bootstrap's
choice of data and exit codes, the list export's volume, selectors, the Redis network policy,
the Secret's name and keys, settings the code accepts. prod-files is prod with
components/portal-files (the portal's export files instead of CHURN_SOURCE)."""

from __future__ import annotations

import os
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
from typer.testing import CliRunner

from churn.cli import app
from core.settings import Settings, check_variables

KUBECTL = shutil.which("kubectl")
pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) is not on PATH"),
]

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
SECRET_TEMPLATE = K8S / "base" / "secret.example.yaml"
KUBERNETES_VERSION = "1.30.0"
NAMESPACES = {"dev": "churn-dev", "prod": "churn", "prod-files": "churn"}
OVERLAYS = tuple(NAMESPACES)
# Variants that are an overlay plus components, rendered from a kustomization of the test's.
VARIANTS = {"prod-files": ("overlays/prod", ["components/portal-files"])}
# The pods' mount paths, and where a test run of a container puts each.
POD_PATHS = ("/data", "/artifacts", "/tmp", "/export")
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")
CHURN_IMAGES = ("churn-api", "churn-ml")


def kustomize(path: Path) -> str:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return result.stdout


def render(overlay: str, scratch: Path) -> str:
    """An overlay, or a variant (an overlay with components) through a kustomization in
    ``scratch`` (kustomize takes relative paths only)."""
    if overlay not in VARIANTS:
        return kustomize(K8S / "overlays" / overlay)
    base, components = VARIANTS[overlay]
    folder = scratch / overlay
    folder.mkdir()
    relative = lambda path: os.path.relpath(K8S / path, folder)  # noqa: E731
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": [relative(base)],
                     "components": [relative(c) for c in components]}  # fmt: skip
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return kustomize(folder)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    scratch = tmp_path_factory.mktemp("kustomize")
    return {overlay: render(overlay, scratch) for overlay in OVERLAYS}


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
            expected = {data: "churn-data", artifacts: "churn-artifacts"}
            if "CHURN_EXPORT_DIR" in env:  # the nightly's batch writes the list there
                expected[env["CHURN_EXPORT_DIR"]] = "churn-export"
                assert mounts[env["CHURN_EXPORT_DIR"]][1], name
            assert claims == expected, name
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
def test_the_night_is_churn_nightly_and_reads_the_source_or_the_export(overlay, objects):
    cron = named(objects[overlay], "CronJob", "churn-nightly")
    (container,) = pod_template(cron)["spec"]["containers"]
    assert container["command"] == ["churn", "nightly"]  # one chain, stopping at a failure
    args = container.get("args", [])
    if overlay == "prod-files":
        assert args == ["--users-file", "/data/incoming/users.parquet",
                        "--events-file", "/data/incoming/events.parquet"]  # fmt: skip
    else:
        assert args == []  # CHURN_SOURCE from the Secret when set; else the raw tables as they are
    nightly = typer.main.get_command(app).commands["nightly"]
    options = {o for p in nightly.params for o in p.opts}
    assert {a for a in args if a.startswith("--")} <= options


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_nightly_exports_the_list_to_a_claim_others_can_read(overlay, objects):
    objs = objects[overlay]
    pod = pod_template(named(objs, "CronJob", "churn-nightly"))["spec"]
    (container,) = pod["containers"]
    export = {e["name"]: e.get("value") for e in container["env"]}["CHURN_EXPORT_DIR"]
    volume, writable = mounts_of(pod, container)[export]
    assert volume["persistentVolumeClaim"]["claimName"] == "churn-export" and writable
    claim = named(objs, "PersistentVolumeClaim", "churn-export")
    assert bytes_of(claim["spec"]["resources"]["requests"]["storage"]) <= 5 * 1024**3  # small
    # prod's reader (another team's pod, a sync sidecar) may run on any node.
    assert claim["spec"]["accessModes"] == (
        ["ReadWriteOnce"] if overlay == "dev" else ["ReadWriteMany"]
    )
    assert "CHURN_EXPORT_DIR" not in config_data(objs)  # only the pod that mounts it has it


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_churn_variable_the_pods_get_is_read(overlay, objects):
    """A CHURN_* name nothing reads stops every command (core.settings.check_variables)."""
    objs = objects[overlay]
    for _, pod in workloads(objs):
        for container in all_containers(pod["spec"]):
            if is_churn_image(container["image"]):
                names = set(config_data(objs)) | {e["name"] for e in container.get("env", [])}
                check_variables(dict.fromkeys(names, "x"))


# --- the bootstrap: `churn bootstrap`, as the rendered pod runs it -------------------------


def pod_environment(
    objs: list[dict], cronjob: str, secrets: dict[str, str], root: Path
) -> tuple[list[str], dict[str, str]]:
    """The CronJob's container command and args, and the environment its pod would get: the
    ConfigMap, the container's values, ``secrets`` for its Secret keys (a key not given is
    left unset, as an optional one would be), the pod's paths under ``root``."""
    (container,) = pod_template(named(objs, "CronJob", cronjob))["spec"]["containers"]
    env = dict(config_data(objs))
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif entry["valueFrom"]["secretKeyRef"]["key"] in secrets:
            env[entry["name"]] = secrets[entry["valueFrom"]["secretKeyRef"]["key"]]
    for key, value in env.items():
        for path in POD_PATHS:
            if value == path or value.startswith(path + "/"):
                env[key] = str(root / path.lstrip("/")) + value[len(path) :]
    for path in POD_PATHS:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    env["CHURN_CONFIG_FILE"] = str(root / "no-churn.yaml")  # no developer's churn.yaml
    return container["command"] + container.get("args", []), env


def run_in_process(
    command: list[str], env: dict[str, str], monkeypatch, codes: dict[str, int] | None = None
) -> tuple[int, list[str], str]:
    """``command`` (``churn …``) in this process, in exactly ``env``, its steps recorded and
    not run: (exit code, each step's churn arguments, output). ``codes`` gives a step's exit."""
    calls: list[str] = []

    def step(argv: list[str], **_: object) -> subprocess.CompletedProcess:
        calls.append(" ".join(argv[1:]))
        code = next((c for prefix, c in (codes or {}).items() if calls[-1].startswith(prefix)), 0)
        return subprocess.CompletedProcess(argv, code)

    monkeypatch.setattr("churn.bootstrap.subprocess.run", step)
    assert command[0] == "churn"
    unset = {key: None for key in os.environ if key.startswith("CHURN_")}
    result = CliRunner().invoke(app, command[1:], env=unset | env)
    return result.exit_code, calls, result.output


FIRST_BUILD = ["data validate", "data prepare", "features build", "features apply", "train",
               "promote", "features materialize"]  # fmt: skip
REDIS = {"CHURN_REDIS_URL": "redis://:pw@127.0.0.1:6379/0"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_bootstraps_with_churn_bootstrap(overlay, objects):
    cron = named(objects[overlay], "CronJob", "churn-bootstrap")
    (container,) = pod_template(cron)["spec"]["containers"]
    assert container["command"] == ["churn", "bootstrap"] and "args" not in container


def test_dev_asks_for_demo_data_and_builds_everything_once_then_only_reloads(
    objects, tmp_path, monkeypatch
):
    command, env = pod_environment(objects["dev"], "churn-bootstrap", REDIS, tmp_path)
    code, calls, output = run_in_process(command, env, monkeypatch)
    assert code == 0, output
    assert calls[0].startswith("data generate --users 2000 --days 120 --start ")
    assert [c.split(" --")[0] for c in calls[1:]] == FIRST_BUILD
    assert "demo data, 2,000 simulated users over 120 days (asked for)" in output

    code, calls, output = run_in_process(command, env, monkeypatch, {"promote": 3})
    assert code == 3
    assert calls[-1] == "promote"  # no model promoted: stop, do not report success
    assert "churn promote --force --version" in output

    models = tmp_path / "artifacts" / "models"
    models.mkdir(parents=True)
    (models / "production.json").write_text('{"version": "v1"}')
    code, calls, output = run_in_process(command, env, monkeypatch)
    assert code == 0, output
    assert [c.split(" --")[0] for c in calls] == ["features apply", "features materialize"]


def test_a_source_in_the_secret_wins_over_dev_s_demo_data(objects, tmp_path, monkeypatch):
    secrets = REDIS | {"CHURN_SOURCE": "postgresql://portal@db:5432/portal"}
    command, env = pod_environment(objects["dev"], "churn-bootstrap", secrets, tmp_path)
    code, calls, output = run_in_process(command, env, monkeypatch)
    assert code == 0, output
    assert calls[0] == "data ingest"  # the backfill: CHURN_SOURCE, read whole
    assert not [c for c in calls if c.startswith("data generate")]


def test_prod_without_a_source_or_files_fails_in_one_line_and_generates_nothing(objects, tmp_path):
    command, env = pod_environment(objects["prod"], "churn-bootstrap", REDIS, tmp_path)
    churn = Path(sys.executable).with_name("churn")
    env["PATH"] = f"{churn.parent}:/usr/bin:/bin"
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.strip()]
    assert line.startswith("bootstrap: nothing to build the first model on")
    for choice in ("CHURN_BOOTSTRAP_DATA", "CHURN_SOURCE", "CHURN_BOOTSTRAP_DEMO=true"):
        assert choice in line
    assert not (tmp_path / "data" / "raw").exists()


def test_prod_files_bootstraps_from_the_export_folder(objects, tmp_path, monkeypatch):
    command, env = pod_environment(objects["prod-files"], "churn-bootstrap", REDIS, tmp_path)
    code, _, output = run_in_process(command, env, monkeypatch)
    assert code == 1  # the folder is there, its files are not: say so, fall back to nothing
    assert "CHURN_BOOTSTRAP_DATA=" in output and "needs users.parquet|csv" in output

    incoming = tmp_path / "data" / "incoming"
    incoming.mkdir(parents=True)
    for name in ("users.parquet", "events.csv", "events.parquet"):
        (incoming / name).write_text("")
    code, calls, output = run_in_process(command, env, monkeypatch)
    assert code == 0, output
    assert calls[0] == (
        f"data ingest --users-file {incoming / 'users.parquet'} "
        f"--events-file {incoming / 'events.parquet'}"
    )
    assert [c.split(" --")[0] for c in calls[1:]] == FIRST_BUILD
