"""The Spark deployment (deploy/spark, deploy/docker/Dockerfile.spark, deploy/k8s/spark),
checked without a cluster, a Docker engine or Java.

The kustomization renders and its built-in objects validate against the Kubernetes 1.30
schemas; the Spark operator's applications carry the fields the operator requires and
agree with the rest of the project: the file and image Dockerfile.spark builds, churn
commands that exist, the engine setting, the base's volumes, paths and Secret, the
settings' Spark configuration; their pods would pass the namespace's restricted Pod
Security Standard. The entry point runs the churn CLI.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from packaging.requirements import Requirement

from core.settings import Settings
from tests.deploy.test_compose import assert_churn_command, instructions, runtime_stage
from tests.deploy.test_k8s import validate

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
SPARK = ROOT / "deploy" / "k8s" / "spark"
BASE = ROOT / "deploy" / "k8s" / "base"
CHURN_JOB = ROOT / "deploy" / "spark" / "churn_job.py"
KUBECTL = shutil.which("kubectl")
OPERATOR_API = "sparkoperator.k8s.io/v1beta2"
APPLICATION_KINDS = ("SparkApplication", "ScheduledSparkApplication")
ROLES = ("driver", "executor")
IMAGE_UID = 10001
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl (with kustomize) is not on PATH"
)

# The operator's v1beta2 API (api/v1beta2/*_types.go of kubeflow/spark-operator): its CRDs
# drop unknown fields, so a misspelt field would be ignored without a word.
SPEC_FIELDS = {
    "type", "sparkVersion", "mode", "proxyUser", "image", "imagePullPolicy",
    "imagePullSecrets", "mainClass", "mainApplicationFile", "arguments", "sparkConf",
    "hadoopConf", "sparkConfigMap", "hadoopConfigMap", "volumes", "driver", "executor",
    "deps", "restartPolicy", "nodeSelector", "failureRetries", "retryInterval",
    "pythonVersion", "memoryOverheadFactor", "monitoring", "batchScheduler",
    "timeToLiveSeconds", "batchSchedulerOptions", "sparkUIOptions", "driverIngressOptions",
    "dynamicAllocation",
}  # fmt: skip
POD_FIELDS = {
    "template", "cores", "coreLimit", "memory", "memoryOverhead", "gpu", "image",
    "configMaps", "secrets", "env", "envVars", "envFrom", "envSecretKeyRefs", "labels",
    "annotations", "volumeMounts", "affinity", "tolerations", "podSecurityContext",
    "securityContext", "schedulerName", "sidecars", "initContainers", "hostNetwork",
    "nodeSelector", "dnsConfig", "terminationGracePeriodSeconds", "serviceAccount",
    "hostAliases", "shareProcessNamespace",
}  # fmt: skip
ROLE_FIELDS = {
    "driver": POD_FIELDS | {
        "podName", "coreRequest", "javaOptions", "lifecycle", "kubernetesMaster",
        "serviceAnnotations", "serviceLabels", "ports", "priorityClassName",
    },
    "executor": POD_FIELDS | {
        "instances", "coreRequest", "javaOptions", "lifecycle", "deleteOnTermination",
        "ports", "priorityClassName",
    },
}  # fmt: skip
SCHEDULE_FIELDS = {
    "schedule", "template", "suspend", "concurrencyPolicy", "successfulRunHistoryLimit",
    "failedRunHistoryLimit",
}  # fmt: skip
RESTART_FIELDS = {
    "type", "onSubmissionFailureRetries", "onFailureRetries",
    "onSubmissionFailureRetryInterval", "onFailureRetryInterval",
}  # fmt: skip
# What spark_conf(settings) holds that the operator passes from other fields.
CONF_FROM_FIELDS = {"spark.app.name", "spark.driver.memory"}


# --- the files ---------------------------------------------------------------------------


def kustomization() -> dict:
    return yaml.safe_load((SPARK / "kustomization.yaml").read_text(encoding="utf-8"))


@cache
def source_objects() -> tuple[dict, ...]:
    """The objects of the kustomization's resources, as written (before kustomize)."""
    docs = []
    for name in kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((SPARK / name).read_text(encoding="utf-8")) if d]
    return tuple(docs)


def env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a kustomize env file (comments and blank lines skipped)."""
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def spark_config() -> dict[str, str]:
    (generator,) = kustomization()["configMapGenerator"]
    (envs,) = generator["envs"]
    return env_file(SPARK / envs)


def spark_config_name() -> str:
    (generator,) = kustomization()["configMapGenerator"]
    return generator["name"]


def applications(objs: tuple[dict, ...] | list[dict]) -> list[tuple[str, dict]]:
    """``(name, SparkApplication spec)``: each SparkApplication's, each schedule's template."""
    apps = []
    for obj in objs:
        if obj["kind"] == "SparkApplication":
            apps.append((obj["metadata"]["name"], obj["spec"]))
        elif obj["kind"] == "ScheduledSparkApplication":
            apps.append((obj["metadata"]["name"], obj["spec"]["template"]))
    return apps


def env_of(pod: dict, config: dict[str, str], config_name: str) -> dict[str, object]:
    """A Spark pod's environment: its ConfigMap (by name) under its own ``env``."""
    env: dict[str, object] = {}
    for source in pod.get("envFrom", []):
        assert source["configMapRef"]["name"] == config_name
        env |= config
    for var in pod.get("env", []):
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env


def settings_from(config: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    return Settings()


def base_claims() -> set[str]:
    docs = yaml.safe_load_all((BASE / "pvc.yaml").read_text(encoding="utf-8"))
    return {d["metadata"]["name"] for d in docs if d and d["kind"] == "PersistentVolumeClaim"}


def dockerfile_env() -> dict[str, str]:
    env = {}
    for op, args in runtime_stage("spark"):
        if op == "ENV":
            env |= dict(token.split("=", 1) for token in shlex.split(args))
    return env


def dockerfile_args() -> dict[str, str]:
    return dict(args.split("=", 1) for op, args in instructions("spark") if op == "ARG")


def pyspark_requirement() -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (text,) = [
        t for t in project["optional-dependencies"]["spark"] if Requirement(t).name == "pyspark"
    ]
    return Requirement(text)


def copied_to(destination: str) -> list[str]:
    """The sources the Dockerfile's runtime stage copies from the build context to a path."""
    sources = []
    for op, args in runtime_stage("spark"):
        if op == "COPY" and "--from=" not in args:
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            if words[-1] == destination:
                sources += words[:-1]
    return sources


def spark_pod(name: str, spec: dict, role: str) -> dict:
    """The Pod the operator's webhook makes of a driver or executor spec, as far as the
    manifest decides it (Spark adds its own volumes and variables)."""
    pod = spec[role]
    container = {"name": f"spark-kubernetes-{role}", "image": spec["image"]}
    for key in ("env", "envFrom", "volumeMounts", "securityContext"):
        if key in pod:
            container[key] = pod[key]
    mounted = {m["name"] for m in pod.get("volumeMounts", [])}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-{role}", "labels": pod.get("labels", {})},
        "spec": {
            "serviceAccountName": pod["serviceAccount"],
            "securityContext": pod.get("podSecurityContext", {}),
            "volumes": [v for v in spec.get("volumes", []) if v["name"] in mounted],
            "containers": [container],
        },
    }


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    if KUBECTL is None:
        pytest.skip("kubectl (with kustomize) is not on PATH")
    result = subprocess.run(
        [KUBECTL, "kustomize", str(SPARK)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {SPARK} failed:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d]


# --- files, rendering, schemas -------------------------------------------------------------


def test_every_yaml_file_parses_and_is_used_by_the_kustomization():
    files = sorted(p.name for p in SPARK.glob("*.y*ml"))
    assert "kustomization.yaml" in files
    for name in files:
        docs = list(yaml.safe_load_all((SPARK / name).read_text(encoding="utf-8")))
        assert [d for d in docs if d], f"{name} holds no document"
    used = {"kustomization.yaml", *kustomization()["resources"]}
    used |= set(kustomization().get("configurations", []))
    assert set(files) == used, "a YAML file the kustomization does not apply, or a missing one"
    (generator,) = kustomization()["configMapGenerator"]
    assert all((SPARK / path).is_file() for path in generator["envs"])


@needs_kubectl
def test_the_kustomization_renders_into_the_base_namespace(rendered):
    namespace = yaml.safe_load((BASE / "namespace.yaml").read_text(encoding="utf-8"))
    base = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization()["namespace"] == base["namespace"] == namespace["metadata"]["name"]
    kinds = {o["kind"] for o in rendered}
    assert {"ServiceAccount", "Role", "RoleBinding", "ConfigMap"} <= kinds
    assert "ScheduledSparkApplication" in kinds
    assert "Namespace" not in kinds  # the base owns it
    for obj in rendered:
        assert obj["metadata"]["namespace"] == base["namespace"], obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "churn"
    for binding in (o for o in rendered if o["kind"] == "RoleBinding"):
        assert {s["namespace"] for s in binding["subjects"]} == {base["namespace"]}


@needs_kubectl
def test_the_applications_name_the_generated_config_map(rendered):
    """Kustomize does not know the operator's kinds: without kustomizeconfig.yaml they
    would name a ConfigMap that does not exist (the generated one has a hash suffix)."""
    (config,) = [o for o in rendered if o["kind"] == "ConfigMap"]
    assert config["metadata"]["name"].startswith(spark_config_name() + "-")
    assert config["data"] == spark_config()
    apps = applications(rendered)
    assert apps
    for name, spec in apps:
        for role in ROLES:
            refs = [s["configMapRef"]["name"] for s in spec[role].get("envFrom", [])]
            assert refs == [config["metadata"]["name"]], (name, role)


@needs_kubectl
def test_an_overlay_moves_every_object_to_its_namespace_and_registry(tmp_path):
    """As for the base (overlays/dev uses churn-dev): the driver's RoleBinding must follow,
    and the image of the operator's kinds too (kustomize knows neither by itself)."""
    overlay = {
        "resources": [os.path.relpath(SPARK, tmp_path)],
        "namespace": "churn-dev",
        "images": [{"name": "churn-spark", "newName": "registry.example.com/churn-spark"}],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    result = subprocess.run(
        [KUBECTL, "kustomize", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    objs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {o["metadata"]["namespace"] for o in objs} == {"churn-dev"}
    (binding,) = [o for o in objs if o["kind"] == "RoleBinding"]
    assert {s["namespace"] for s in binding["subjects"]} == {"churn-dev"}
    images = {spec["image"] for _, spec in applications(objs)}
    assert images == {"registry.example.com/churn-spark:0.1.0"}


@needs_kubectl
def test_the_built_in_objects_are_valid_for_kubernetes_1_30(rendered, tmp_path):
    builtin = [o for o in rendered if not o["apiVersion"].startswith("sparkoperator.k8s.io/")]
    assert {"ServiceAccount", "Role", "RoleBinding"} <= {o["kind"] for o in builtin}
    path = tmp_path / "builtin.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_role(tmp_path):
    (role,) = [o for o in source_objects() if o["kind"] == "Role"]
    broken = yaml.safe_load(yaml.safe_dump(role))
    broken["rules"][0]["verbs"] = "create"
    broken["rules"][0]["resource"] = ["pods"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = validate(path)
    assert result.returncode != 0
    assert "verbs" in result.stdout + result.stderr
    assert "resource" in result.stdout + result.stderr


def test_the_spark_pods_are_valid_pods_under_the_restricted_standard(tmp_path):
    pods = [
        spark_pod(n, spec, role) for n, spec in applications(source_objects()) for role in ROLES
    ]
    assert pods
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump_all(pods))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    for pod in pods:
        spec, (container,) = pod["spec"], pod["spec"]["containers"]
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["runAsUser"] == security["fsGroup"] == IMAGE_UID
        assert security["seccompProfile"]["type"] == "RuntimeDefault"
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context["readOnlyRootFilesystem"] is True


# --- the applications ------------------------------------------------------------------


def test_the_jobs_are_the_features_build_and_the_batch():
    names = {name: spec["arguments"] for name, spec in applications(source_objects())}
    assert names == {
        "churn-spark-features": ["features", "build"],
        "churn-spark-batch": ["batch", "score"],
    }


def test_each_application_has_the_fields_the_operator_requires_and_no_unknown_one():
    apps = applications(source_objects())
    for obj in source_objects():
        assert obj["apiVersion"].startswith("sparkoperator.k8s.io/") == (
            obj["kind"] in APPLICATION_KINDS
        )
        if obj["kind"] in APPLICATION_KINDS:
            assert obj["apiVersion"] == OPERATOR_API
        if obj["kind"] == "ScheduledSparkApplication":
            assert set(obj["spec"]) <= SCHEDULE_FIELDS
            assert {"schedule", "template"} <= set(obj["spec"])
            assert obj["spec"]["concurrencyPolicy"] == "Forbid"
    for name, spec in apps:
        assert set(spec) <= SPEC_FIELDS, (name, set(spec) - SPEC_FIELDS)
        assert {"type", "sparkVersion", "mainApplicationFile", "driver", "executor"} <= set(spec)
        assert (spec["type"], spec["pythonVersion"], spec["mode"]) == ("Python", "3", "cluster")
        assert spec["restartPolicy"]["type"] == "Never"
        assert set(spec["restartPolicy"]) <= RESTART_FIELDS
        for role in ROLES:
            pod = spec[role]
            assert set(pod) <= ROLE_FIELDS[role], (name, role, set(pod) - ROLE_FIELDS[role])
            assert isinstance(pod["cores"], int) and pod["cores"] >= 1
            assert re.fullmatch(r"\d+[kmgt]", pod["memory"]), pod["memory"]
            assert re.fullmatch(r"\d+[kmgt]", pod.get("memoryOverhead", "0m"))
            assert pod["serviceAccount"]
        assert isinstance(spec["executor"]["instances"], int)
        assert spec["executor"]["instances"] >= 1


def test_the_applications_run_the_entry_point_of_the_image():
    (source,) = copied_to("/opt/churn/churn_job.py")
    assert ROOT / source == CHURN_JOB
    env = dockerfile_env()
    labels = " ".join(args for op, args in runtime_stage("spark") if op == "LABEL")
    title = re.search(r'org\.opencontainers\.image\.title="([^"]+)"', labels)
    prod = yaml.safe_load(
        (ROOT / "deploy/k8s/overlays/prod/kustomization.yaml").read_text(encoding="utf-8")
    )
    release = {image["newTag"] for image in prod["images"]}
    for name, spec in applications(source_objects()):
        assert spec["mainApplicationFile"] == "local:///opt/churn/churn_job.py", name
        image, _, tag = spec["image"].rpartition(":")
        assert image == title.group(1) == "churn-spark"
        assert {tag} == release, f"{name}: churn-spark:{tag}, the other images are {release}"
        for role in ROLES:
            assert spec[role].get("image", spec["image"]) == spec["image"]
    assert env["PYSPARK_PYTHON"] == "/opt/venv/bin/python"


def test_the_arguments_name_existing_churn_commands():
    for _, spec in applications(source_objects()):
        assert_churn_command(["churn", *spec["arguments"]])


def test_the_command_check_catches_a_wrong_command():
    with pytest.raises(AssertionError):
        assert_churn_command(["churn", "features", "--no-such-option"])
    with pytest.raises(AssertionError):
        assert_churn_command(["churn", "features"])  # a group, not a command


def test_driver_and_executors_run_the_spark_engine_with_settings_the_code_accepts(monkeypatch):
    config = spark_config()
    unknown = {k for k in config if k.startswith("CHURN_")} - {
        f"CHURN_{name.upper()}" for name in Settings.model_fields
    }
    assert not unknown  # an unknown CHURN_ variable is silently ignored: a typo
    settings = settings_from(config, monkeypatch)
    assert settings.engine == "spark"
    for name, spec in applications(source_objects()):
        for role in ROLES:
            env = env_of(spec[role], config, spark_config_name())
            assert env["CHURN_ENGINE"] == "spark", (name, role)


def test_secrets_come_from_the_base_secret_and_only_to_the_driver():
    template = yaml.safe_load((BASE / "secret.example.yaml").read_text(encoding="utf-8"))
    for name, spec in applications(source_objects()):
        refs = [v["valueFrom"]["secretKeyRef"] for v in spec["driver"]["env"] if "valueFrom" in v]
        assert {r["key"] for r in refs} == {"CHURN_REDIS_URL", "CHURN_FEAST_REGISTRY_URL"}
        for ref in refs:
            assert ref["name"] == template["metadata"]["name"], name
            assert ref["key"] in template["stringData"], name
        assert "env" not in spec["executor"], f"{name}: the executors need no secret"


def test_paths_project_and_pushgateway_are_the_base_ones(monkeypatch):
    base, spark = env_file(BASE / "config.env"), spark_config()
    shared = ("CHURN_DATA_DIR", "CHURN_ARTIFACTS_DIR", "CHURN_FEAST_PROJECT")
    shared += ("CHURN_PUSHGATEWAY_URL", "HOME", "MPLCONFIGDIR")
    assert {k: spark[k] for k in shared} == {k: base[k] for k in shared}
    # churn-api and churn-monitor share churn-config; their images have no pyspark.
    assert base.get("CHURN_ENGINE", "duckdb") == "duckdb"
    settings = settings_from(spark, monkeypatch)
    assert urlparse(settings.pushgateway_url).hostname == "pushgateway"


def test_volumes_are_the_base_claims_mounted_where_the_settings_point(monkeypatch):
    settings = settings_from(spark_config(), monkeypatch)
    claims = base_claims()
    for name, spec in applications(source_objects()):
        volumes = {v["name"]: v for v in spec["volumes"]}
        claims_used = [
            v["persistentVolumeClaim"] for v in spec["volumes"] if "persistentVolumeClaim" in v
        ]
        used = {claim["claimName"] for claim in claims_used}
        # The export claim only where a batch writes the retention team's list.
        assert used == claims - ({"churn-export"} if "batch" not in name else set()), name
        for role in ROLES:
            mounts = {m["mountPath"]: m for m in spec[role]["volumeMounts"]}
            assert {m["name"] for m in mounts.values()} <= set(volumes), (name, role)
            data = mounts[str(settings.data_dir)]  # executors write the tables too
            assert volumes[data["name"]]["persistentVolumeClaim"]["claimName"] == "churn-data"
            assert not data.get("readOnly", False)
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]], "the read-only root's scratch"
        artifacts = {m["mountPath"]: m for m in spec["driver"]["volumeMounts"]}[
            str(settings.artifacts_dir)
        ]
        assert volumes[artifacts["name"]]["persistentVolumeClaim"]["claimName"] == "churn-artifacts"


def test_what_the_image_and_python_write_lands_on_the_tmp_volume():
    """The pods' root filesystem is read-only: only /tmp (an emptyDir) takes files."""
    workdirs = [args for op, args in runtime_stage("spark") if op == "WORKDIR"]
    assert workdirs[-1] == "/tmp", "Spark writes to the working directory"
    config = spark_config()
    assert config["HOME"].startswith("/tmp") and config["MPLCONFIGDIR"].startswith("/tmp/")


def test_the_spark_configuration_is_the_settings_one(monkeypatch):
    from core.spark_engine import spark_conf  # pyspark: in the dev install

    settings = settings_from(spark_config(), monkeypatch)
    expected = spark_conf(settings)
    for name, spec in applications(source_objects()):
        conf = spec["sparkConf"]
        assert conf == {k: v for k, v in expected.items() if k not in CONF_FROM_FIELDS}, name
        assert conf["spark.sql.session.timeZone"] == "UTC"
        assert conf["spark.sql.parquet.outputTimestampType"] == "TIMESTAMP_MICROS"
        assert spec["driver"]["memory"] == expected["spark.driver.memory"], name
        executor = spec["executor"]
        cores = executor["instances"] * executor["cores"]
        partitions = int(conf["spark.sql.shuffle.partitions"])
        assert partitions >= cores, f"{name}: {cores} executor cores, {partitions} partitions"


def test_the_spark_version_matches_the_pinned_pyspark():
    requirement = pyspark_requirement()
    for name, spec in applications(source_objects()):
        assert requirement.specifier.contains(spec["sparkVersion"]), (name, str(requirement))
    tag = dockerfile_args()["SPARK_IMAGE"].rpartition(":")[2]
    version, _, variant = tag.partition("-")
    assert requirement.specifier.contains(version), (tag, str(requirement))
    assert "java17" in variant


def test_the_image_pins_the_spark_version_the_applications_declare():
    """The jars and spark-submit are the pinned pyspark's: sparkVersion must be that one."""
    text = (ROOT / "deploy/docker/requirements-spark.txt").read_text(encoding="utf-8")
    (pin,) = re.findall(r"^pyspark==(\S+)$", text, flags=re.MULTILINE)
    for name, spec in applications(source_objects()):
        assert spec["sparkVersion"] == pin, name
    tag = dockerfile_args()["SPARK_IMAGE"].rpartition(":")[2]
    assert tag.split(".")[:2] == pin.split(".")[:2], f"Java and entrypoint from Spark {tag}"


def test_the_applications_run_only_by_hand_the_night_runs_in_its_chain():
    """A batch on the clock would score yesterday's features after tonight's failed: the
    night's batch is a step of the base's churn-nightly chain, these are run by hand."""
    scheduled = {
        o["metadata"]["name"]: o["spec"]
        for o in source_objects()
        if o["kind"] == "ScheduledSparkApplication"
    }
    assert set(scheduled) == {"churn-spark-features", "churn-spark-batch"}
    for name, spec in scheduled.items():
        assert spec["suspend"] is True, name
        assert spec["schedule"].startswith("CRON_TZ=Etc/UTC "), name


def test_only_the_driver_may_manage_pods():
    objs = source_objects()
    accounts = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceAccount"}
    (role,) = [o for o in objs if o["kind"] == "Role"]
    (binding,) = [o for o in objs if o["kind"] == "RoleBinding"]
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert {"pods", "services", "configmaps", "persistentvolumeclaims"} <= resources
    assert {"create", "get", "list", "watch", "delete"} <= verbs
    assert "*" not in verbs | resources
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    bound = {s["name"] for s in binding["subjects"] if s["kind"] == "ServiceAccount"}
    for name, spec in applications(objs):
        driver, executor = spec["driver"]["serviceAccount"], spec["executor"]["serviceAccount"]
        assert driver in bound and driver in accounts, name
        assert executor in accounts and executor not in bound, name
        assert accounts[executor]["automountServiceAccountToken"] is False


# --- the image -----------------------------------------------------------------------------


def test_the_image_copies_the_entry_point_from_the_build_context():
    (source,) = copied_to("/opt/churn/churn_job.py")
    assert (ROOT / source).is_file()
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(source).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    assert not [p for p in ignored for prefix in prefixes if fnmatch(prefix, p)]


def test_the_image_runs_the_spark_engine_as_the_volumes_owner():
    stage = runtime_stage("spark")
    (user,) = [args for op, args in stage if op == "USER"]
    assert user.split(":")[0] == str(IMAGE_UID)
    env = dockerfile_env()
    assert env["CHURN_ENGINE"] == "spark"
    assert yaml.safe_load([args for op, args in stage if op == "ENTRYPOINT"][-1]) == [
        "/opt/entrypoint.sh"
    ]
    from_spark = [args for op, args in stage if op == "COPY" and "--from=spark" in args]
    assert any("/opt/entrypoint.sh" in args for args in from_spark)
    requirements = [args for op, args in instructions("spark") if op == "COPY"]
    assert any("deploy/docker/requirements-spark.txt" in args for args in requirements)


def test_spark_home_is_the_pinned_pyspark_of_the_venv():
    env = dockerfile_env()
    python = re.fullmatch(r"python:(\d+\.\d+)-slim", dockerfile_args()["PYTHON_IMAGE"])
    assert python, "SPARK_HOME below names the venv's site-packages by the Python minor"
    site = f"/opt/venv/lib/python{python.group(1)}/site-packages"
    assert env["SPARK_HOME"] == f"{site}/pyspark"
    assert env["PYSPARK_PYTHON"].startswith("/opt/venv/")
    assert env["JAVA_HOME"] == "/opt/java/openjdk"


# --- the entry point -------------------------------------------------------------------------


def run_job(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHURN_JOB), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=os.environ | {"CHURN_CONFIG_FILE": str(tmp_path / "none.yaml")} | env,
        check=False,
    )


def test_the_entry_point_runs_the_churn_cli(tmp_path):
    result = run_job("--help", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "features" in result.stdout and "Usage: churn" in result.stdout


def test_the_entry_point_passes_arguments_and_exit_codes_through(tmp_path):
    result = run_job("env", tmp_path=tmp_path, CHURN_ENGINE="spark", CHURN_DATA_DIR="/data")
    assert result.returncode == 0, result.stderr
    assert "export CHURN_ENGINE=spark" in result.stdout.splitlines()
    assert "export CHURN_DATA_DIR=/data" in result.stdout.splitlines()
    result = run_job("no-such-command", tmp_path=tmp_path)
    assert result.returncode == 2
