"""The container images and the compose stack, checked without a Docker engine.

The compose file against the Compose specification, and what the schema cannot see:
dependencies that exist, the start order, mounted files that exist, no secret in the
file, every variable documented. The Dockerfiles: non-root, no baked secret, every
package of the project copied. The pinned requirements: exact pins that cover the
project's requirements and suffice to import what each image runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from functools import cache
from pathlib import Path

import pytest
import typer.main
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from churn.cli import app

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKER = ROOT / "deploy" / "docker"
BOOTSTRAP = DOCKER / "bootstrap.sh"
IMAGES = ("ml", "api", "spark")
BIN = Path(sys.executable).parent
SECRET = re.compile(r"PASSWORD|TOKEN|SECRET|CREDENTIAL", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME:?message}, ${NAME:+alt}; $${...} is escaped for the shell.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
PIN = re.compile(r"^([a-z0-9][a-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def services() -> dict[str, dict]:
    return compose()["services"]


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line):
            pairs[match.group(1)] = match.group(2)
    return pairs


def default_of(text: str) -> str:
    """``text`` with every ``${VAR:-default}`` replaced by its default (as with no .env)."""
    return VARIABLE.sub(lambda m: m.group(3) if m.group(2) in (":-", "-") else "", text)


def mounts(service: dict) -> list[tuple[str, str]]:
    """``(source, target)`` of each short-syntax volume entry, variables at their defaults."""
    return [tuple(default_of(entry).split(":")[:2]) for entry in service.get("volumes", [])]


def strings(node: object) -> list[str]:
    """Every key and value of the loaded compose file (comments are not part of it)."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings(key) + strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    return subprocess.run(
        [*command, str(path)], capture_output=True, text=True, timeout=120, check=False
    )


# --- docker-compose.yml ------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification():
    result = check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_compose_file(tmp_path):
    broken = COMPOSE.read_text(encoding="utf-8").replace(
        "condition: service_completed_successfully", "condition: service_done", 1
    )
    (tmp_path / "docker-compose.yml").write_text(broken, encoding="utf-8")
    result = check_compose(tmp_path / "docker-compose.yml")
    assert result.returncode != 0
    assert "service_done" in result.stdout + result.stderr


def test_every_dependency_exists_and_waits_on_a_healthcheck_it_has():
    for name, service in services().items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services(), f"{name} depends on unknown service {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services()[target], f"{name} waits on {target}'s health"


def test_the_api_and_scheduler_start_after_redis_is_healthy_and_bootstrap_succeeded():
    for name in ("api", "scheduler"):
        depends = services()[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["bootstrap"]["condition"] == "service_completed_successfully", name
    assert services()["bootstrap"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services()["bootstrap"]["restart"] == "no"


def test_the_churn_services_share_the_data_and_artifacts_volumes():
    shared = {
        ("churn-data", "/var/lib/churn/data"),
        ("churn-artifacts", "/var/lib/churn/artifacts"),
    }
    for name in ("bootstrap", "scheduler", "api"):
        assert shared <= set(mounts(services()[name])), name
    # The API only reads them: models and the registry are written by the jobs.
    assert all(
        entry.endswith(":ro")
        for entry in services()["api"]["volumes"]
        if entry.startswith("churn-")
    )


def test_mounted_repo_paths_exist_and_named_volumes_are_declared():
    declared = set(compose().get("volumes", {}))
    for name, service in services().items():
        for source, _ in mounts(service):
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, not in the repo"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_prometheus_and_grafana_mount_their_deploy_files():
    prometheus = dict(mounts(services()["prometheus"]))
    assert prometheus["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert prometheus["./deploy/prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    grafana = dict(mounts(services()["grafana"]))
    assert grafana["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    # The dashboard provider reads the folder where the dashboards are mounted.
    providers = [
        provider
        for path in (ROOT / "deploy/grafana/provisioning/dashboards").glob("*.y*ml")
        for provider in yaml.safe_load(path.read_text(encoding="utf-8"))["providers"]
    ]
    assert providers, "no Grafana dashboard provider"
    for provider in providers:
        assert provider["options"]["path"] == grafana["./deploy/grafana/dashboards"]


def test_prometheus_scrapes_services_of_the_stack_on_their_ports():
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text("utf-8"))
    api_port = str(services()["api"]["environment"]["CHURN_API_PORT"])
    listening = {"api": api_port, "pushgateway": "9091", "prometheus": "9090"}
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert {"api:8000", "pushgateway:9091"} <= set(targets)
    for target in targets:
        host, _, port = target.partition(":")
        if host != "localhost":
            assert host in services(), f"Prometheus scrapes {target}: no such service"
            assert listening.get(host) == port, f"{host} does not listen on {port}"


def test_no_secret_is_written_in_the_compose_file():
    for name, service in services().items():
        for key, value in service.get("environment", {}).items():
            text = str(value)
            if SECRET.search(key):
                match = VARIABLE.fullmatch(text)
                assert match, f"{name}: {key} must be a ${{VAR}} reference, not {text!r}"
                if match.group(2) in (":-", "-"):
                    assert not match.group(3), f"{name}: {key} has a default secret"
            for password in re.findall(r"://[^:/@\s]*:([^@\s]+)@", text):
                assert VARIABLE.fullmatch(password), f"{name}: {key} has a literal password"


def test_every_variable_is_documented_in_env_example_with_a_safe_value():
    used = {match.group(1) for text in strings(compose()) for match in VARIABLE.finditer(text)}
    documented = env_example()
    assert used - set(documented) == set(), "used in docker-compose.yml, not in .env.example"
    assert set(documented) - used == set(), "in .env.example, not used by docker-compose.yml"
    for key, value in documented.items():
        if SECRET.search(key):
            assert value == "", f".env.example must not hold a value for {key}"


def test_images_are_pinned_and_only_published_on_the_publish_address():
    for name, service in services().items():
        image = default_of(service["image"])
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: unpinned image {image}"
        for port in service.get("ports", []):
            assert port.startswith("${PUBLISH_ADDRESS:-127.0.0.1}:"), f"{name} publishes {port}"
    assert "ports" not in services()["redis"], "Redis must stay inside the compose network"


def test_service_commands_are_commands_of_the_images():
    assert services()["scheduler"]["command"] == ["churn", "schedule"]
    assert_churn_command(["churn", "schedule"])
    assert services()["bootstrap"]["command"] == ["churn-bootstrap"]
    assert "deploy/docker/bootstrap.sh /usr/local/bin/churn-bootstrap" in dockerfile_text("ml")


# --- the Dockerfiles -----------------------------------------------------------------


def dockerfile_text(image: str) -> str:
    return (DOCKER / f"Dockerfile.{image}").read_text(encoding="utf-8")


def instructions(image: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined, comments dropped."""
    lines = [line for line in dockerfile_text(image).splitlines() if not line.startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in joined.splitlines()
        if line.strip()
    ]


def runtime_stage(image: str) -> list[tuple[str, str]]:
    steps = instructions(image)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


@pytest.mark.parametrize("image", IMAGES)
def test_image_runs_as_a_non_root_user(image):
    users = [args.strip() for op, args in runtime_stage(image) if op == "USER"]
    assert users, f"Dockerfile.{image} has no USER in its runtime stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"Dockerfile.{image} runs as {users[-1]}"


@pytest.mark.parametrize("image", IMAGES)
def test_no_secret_is_baked_into_the_image(image):
    for op, args in instructions(image):
        if op in ("ENV", "ARG"):
            keys = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]
            assert not [key for key in keys if SECRET.search(key)], f"{op} {args}"


def test_api_image_checks_health_and_listens_on_every_interface():
    stage = runtime_stage("api")
    checks = [args for op, args in stage if op == "HEALTHCHECK"]
    assert checks and "/health" in checks[0] and "urllib" in checks[0]
    env = " ".join(args for op, args in stage if op == "ENV")
    assert "CHURN_API_HOST=0.0.0.0" in env.split()
    assert [args for op, args in stage if op == "CMD"] == ['["churn", "serve"]']


@pytest.mark.parametrize("image", IMAGES)
def test_image_copies_every_package_and_nothing_the_build_context_leaves_out(image):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = project["tool"]["setuptools"]["packages"]
    assert "feature_store.yaml" in project["tool"]["setuptools"]["package-data"]["feature_repo"]
    sources = [
        shlex.split(args)[:-1]
        for op, args in instructions(image)
        if op == "COPY" and "--from=" not in args
    ]
    sources = [s for group in sources for s in group if not s.startswith("--")]
    assert set(packages) <= set(sources), f"Dockerfile.{image} misses a package"
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in sources:
        assert (ROOT / source).exists(), source
        parts = Path(source).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = [p for p in ignored for prefix in prefixes if fnmatch(prefix, p)]
        assert not hit, f"{source} is excluded from the build context by {hit}"


# --- pinned requirements ---------------------------------------------------------------


def pins(image: str) -> dict[str, str]:
    path = DOCKER / f"requirements-{image}.txt"
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        name = match.group(1)
        assert name not in found, f"{path.name}: {name} pinned twice"
        found[canonicalize_name(name)] = match.group(2)
    assert found, f"{path.name} pins nothing"
    return found


@pytest.mark.parametrize("image", IMAGES)
def test_requirement_files_pin_every_line_exactly(image):
    pins(image)


def test_pins_cover_the_project_requirements_and_the_api_is_a_subset():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    required = project["dependencies"] + project["optional-dependencies"]["postgres"]
    ml, api = pins("ml"), pins("api")
    for text in required:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in ml, f"{name} (pyproject.toml) is not in requirements-ml.txt"
        assert requirement.specifier.contains(ml[name], prereleases=True), (text, ml[name])
    assert {name: ml.get(name) for name in api} == api, "the API pins differ from the ML pins"
    assert {"feast", "redis", "fastapi", "uvicorn", "scikit-learn"} <= set(api)
    assert not {"matplotlib", "pandera"} & set(api)
    spark = pins("spark")
    assert {name: spark.get(name) for name in ml} == ml, "the Spark pins differ from the ML pins"
    for text in project["optional-dependencies"]["spark"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert requirement.specifier.contains(spark[name], prereleases=True), (
            text,
            spark.get(name),
        )


# Run in a fresh interpreter: modules of distributions that are not pinned for the image
# cannot be imported, as in the image, so an optional import falls back as it would there.
IMPORT_CHECK = r"""
import importlib, importlib.abc, importlib.metadata, json, pkgutil, re, sys
pinned, modules, packages = json.loads(sys.argv[1])
pinned.append("churn-feature-store")  # the project's own wheel
canon = lambda name: re.sub(r"[-_.]+", "-", name).lower()
owners = importlib.metadata.packages_distributions()

class NotInImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        dists = owners.get(name.partition(".")[0])
        if dists and not any(canon(d) in pinned for d in dists):
            raise ModuleNotFoundError(f"No module named {name!r} (its distribution "
                                      f"{dists} is not pinned for this image)", name=name)
        return None

sys.meta_path.insert(0, NotInImage())
for package in packages:
    root = importlib.import_module(package)
    if package == "feature_repo":  # `feast apply` imports the repo's files by top-level name
        sys.path.insert(0, root.__path__[0])
    modules += [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")]
for name in modules:
    if name.endswith(("spark_engine", "spark_predict")) and "pyspark" not in pinned:
        continue  # CHURN_ENGINE=spark runs in churn-spark (docs/spark.md), not in this image
    importlib.import_module(name)
if "online_api.app" in modules:
    from core.settings import get_settings
    from online_api.app import create_app
    create_app(get_settings(data_dir=sys.argv[2], artifacts_dir=sys.argv[2]))
print(len(modules))
"""

IMAGE_IMPORTS = {
    # `churn serve`: the CLI, the app and what it loads, uvicorn's standard event loop and parser.
    "api": (
        [
            "churn.cli",
            "feature_repo.store",
            "training.registry",
            "uvicorn.loops.uvloop",
            "uvicorn.protocols.http.httptools_impl",
            "prometheus_client.multiprocess",
        ],
        ["online_api"],
    ),
    # Every module of the package, and the `feast` CLI that `churn features apply` runs.
    "ml": (
        ["feast.cli.cli"],
        ["churn", "ingestion", "feature_repo", "training", "online_api", "batch", "monitor"],
    ),
    # The same, with the Spark modules and Feast's Spark offline store.
    "spark": (
        [
            "feast.cli.cli",
            "feast.infra.offline_stores.contrib.spark_offline_store.spark",
            "core.spark_engine",
            "batch.spark_predict",
        ],
        ["churn", "ingestion", "feature_repo", "training", "online_api", "batch", "monitor"],
    ),
}


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_imports_what_it_runs_from_its_pins_alone(image, tmp_path):
    modules, packages = IMAGE_IMPORTS[image]
    payload = json.dumps([sorted(pins(image)), modules, packages])
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHURN_")}
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK, payload, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) >= len(modules)


# --- the bootstrap script ------------------------------------------------------------------


def assert_churn_command(words: list[str]) -> None:
    """``churn …`` names an existing (sub)command and only options it has."""
    command = typer.main.get_command(app)
    for word in words[1:]:
        if word in getattr(command, "commands", {}):
            command = command.commands[word]
        elif word.startswith("--"):
            options = {opt for param in command.params for opt in param.opts}
            assert word.split("=")[0] in options, f"{' '.join(words)}: no option {word}"
    assert not hasattr(command, "commands"), f"{' '.join(words)} names a group"


def test_bootstrap_script_is_strict_and_runs_existing_commands():
    text = BOOTSTRAP.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(BOOTSTRAP, os.X_OK), "bootstrap.sh must be executable"
    syntax = subprocess.run(["bash", "-n", str(BOOTSTRAP)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    commands = [
        shlex.split(line.strip().split("||")[0])
        for line in text.splitlines()
        if line.strip().startswith("churn ")
    ]
    names = {" ".join(words[:3]) for words in commands}
    assert {"churn data generate", "churn data ingest", "churn data validate"} <= names
    assert {"churn train", "churn promote", "churn features materialize"} <= names
    for words in commands:
        assert_churn_command(words)
