"""The container images and the compose stack, checked without a Docker engine.

The compose file against the Compose specification, and what the schema cannot see:
dependencies that exist, the start order, mounted files that exist, no secret in the
file, every variable documented, every churn service given the same settings (the file
resolved as compose would: anchors, env_file, ${...}), and `churn bootstrap` choosing the
data .env asks for. The Dockerfiles: non-root, no baked secret, every
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
from datetime import UTC, datetime
from fnmatch import fnmatch
from functools import cache
from pathlib import Path

import pytest
import typer.main
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from churn.cli import app
from core.settings import NOT_SETTINGS, Settings
from tests.deploy.test_k8s import run_in_process

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKER = ROOT / "deploy" / "docker"
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
    # The rest reach the churn services through env_file: settings, or read on purpose.
    read = set(SETTING_VARIABLES) | set(NOT_SETTINGS)
    assert set(documented) - used - read == set(), "in .env.example, read by nothing"
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
    # One bootstrap, Kubernetes' too (tests/deploy/test_k8s.py): no script of compose's own.
    assert services()["bootstrap"]["command"] == ["churn", "bootstrap"]
    assert_churn_command(["churn", "bootstrap"])
    assert "bootstrap.sh" not in dockerfile_text("ml") and not (DOCKER / "bootstrap.sh").exists()


# --- the settings every churn service gets ----------------------------------------------

SETTING_VARIABLES = tuple(f"CHURN_{name.upper()}" for name in Settings.model_fields)
# Every service that runs a churn image: each must get the same settings.
CHURN_SERVICES = tuple(
    name for name, service in services().items() if service["image"].startswith("churn-")
)
# What a service sets on purpose, over .env: portal-seed seeds the example database.
OWN_VALUES = {"portal-seed": {"CHURN_SOURCE"}}


def dotenv(text: str) -> dict[str, str]:
    """A .env as compose reads it: KEY=VALUE lines, surrounding quotes removed."""
    pairs = {}
    for line in text.splitlines():
        if match := re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", line):
            value = match.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            pairs[match.group(1)] = value
    return pairs


def interpolate(text: str, variables: dict[str, str]) -> str:
    """compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:+alt}, ${VAR:?error}; $$ is $."""

    def one(match: re.Match[str]) -> str:
        name, op, word = match.group(1), match.group(2), match.group(3) or ""
        value = variables.get(name)
        if op == ":-":
            return value or word
        if op == "-":
            return word if value is None else value
        if op == ":+":
            return word if value else ""
        if op == "+":
            return "" if value is None else word
        if op in (":?", "?") and not value:
            raise ValueError(f"{name}: {word}")
        return value or ""

    return VARIABLE.sub(one, text).replace("$$", "$")


def service_environment(name: str, env_file: dict[str, str]) -> dict[str, str]:
    """What compose puts in ``name``'s containers when .env holds ``env_file``: its env_file
    entries (.env, whole), then its ``environment``, interpolated from the same .env."""
    service = services()[name]
    env: dict[str, str] = {}
    for entry in service.get("env_file", []):
        entry = {"path": entry} if isinstance(entry, str) else entry
        assert entry["path"] in (".env", "./.env"), f"{name} reads {entry['path']}"
        env |= env_file
    for key, value in service.get("environment", {}).items():
        env[key] = interpolate(str(value), env_file)
    return env


def distinct_value(variable: str) -> str:
    return f"{variable.lower()}-from-env"


def test_every_churn_service_gets_every_setting_of_env_the_same():
    assert set(CHURN_SERVICES) == {"bootstrap", "api", "scheduler", "portal-seed"}
    env_file = {variable: distinct_value(variable) for variable in SETTING_VARIABLES}
    seen = {name: service_environment(name, env_file) for name in CHURN_SERVICES}
    api = seen["api"]
    for variable in SETTING_VARIABLES:
        assert variable in api, f"{variable} of .env does not reach the API"
        for name in CHURN_SERVICES:
            if variable not in OWN_VALUES.get(name, set()):
                assert seen[name].get(variable) == api[variable], (name, variable)
    # compose overrides only its own values (paths, in-network URLs); .env holds the rest.
    overridden = {v for v in SETTING_VARIABLES if api[v] != distinct_value(v)}
    assert overridden == {"CHURN_DATA_DIR", "CHURN_ARTIFACTS_DIR", "CHURN_REDIS_URL",
                          "CHURN_PUSHGATEWAY_URL", "CHURN_API_HOST", "CHURN_API_PORT",
                          "CHURN_EXPORT_DIR"}  # fmt: skip


@pytest.mark.parametrize("name", CHURN_SERVICES)
def test_env_example_as_it_is_gives_valid_settings_in_every_churn_service(name, monkeypatch):
    env = service_environment(name, env_example_values())
    for key in [k for k in os.environ if k.startswith("CHURN_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CHURN_CONFIG_FILE", "/nonexistent/churn.yaml")
    settings = Settings()  # every CHURN_* name read, every value valid
    assert str(settings.export_dir) == "/var/lib/churn/export"
    assert settings.nightly_cron == "0 2 * * *"


def env_example_values() -> dict[str, str]:
    return dotenv(ENV_EXAMPLE.read_text(encoding="utf-8"))


def test_the_scheduler_exports_the_list_to_a_host_directory_or_a_volume():
    env = service_environment("scheduler", env_example_values())
    export = env["CHURN_EXPORT_DIR"]
    assert dict(mounts(services()["scheduler"]))["churn-export"] == export
    assert "churn-export" in compose()["volumes"]
    bound = [e for e in services()["scheduler"]["volumes"] if e.endswith(f":{export}")]
    assert bound == ["${EXPORT_HOST_DIR:-churn-export}:" + export]  # a host dir when set
    assert export in dockerfile_text("ml")  # made in the image, owned by the churn user
    # Where churn commands are run by hand too (`churn forget` scrubs the lists), the same.
    bootstrap = [e for e in services()["bootstrap"]["volumes"] if e.endswith(f":{export}")]
    assert bootstrap == bound
    assert not any(e.endswith(f":{export}") for e in services()["api"]["volumes"])


def bootstrap_command(env_file: dict[str, str], root: Path) -> tuple[list[str], dict[str, str]]:
    """compose's bootstrap command and environment for this .env, its paths under ``root``."""
    env = service_environment("bootstrap", env_file)
    for key, value in env.items():
        if value.startswith(("/var/lib/churn/", "/import")):
            env[key] = str(root / value.lstrip("/"))
    env["CHURN_CONFIG_FILE"] = str(root / "no-churn.yaml")
    (root / "import").mkdir(parents=True, exist_ok=True)
    return services()["bootstrap"]["command"], env


def test_compose_bootstraps_on_demo_data_only_as_env_example_asks(tmp_path, monkeypatch):
    command, env = bootstrap_command(env_example_values(), tmp_path)
    code, calls, output = run_in_process(command, env, monkeypatch)
    assert code == 0, output
    assert calls[0].startswith("data generate --users 2000 --days 120 ")

    source = env_example_values() | {"CHURN_SOURCE": "postgresql://portal@portal-db:5432/portal"}
    code, calls, output = run_in_process(*bootstrap_command(source, tmp_path), monkeypatch)
    assert code == 0, output
    assert calls[0] == "data ingest" and not [c for c in calls if "generate" in c]

    folder = env_example_values() | {"CHURN_BOOTSTRAP_DATA": "/srv/portal-export"}
    command, env = bootstrap_command(folder, tmp_path)
    assert env["CHURN_BOOTSTRAP_DATA"] == str(tmp_path / "import")  # the mount, not the host path
    for name in ("users.csv", "events.parquet"):
        (tmp_path / "import" / name).write_text("")
    code, calls, output = run_in_process(command, env, monkeypatch)
    assert code == 0, output
    assert calls[0] == (f"data ingest --users-file {tmp_path / 'import' / 'users.csv'} "
                        f"--events-file {tmp_path / 'import' / 'events.parquet'}")  # fmt: skip


def test_compose_without_demo_source_or_files_stops_in_one_line(tmp_path, monkeypatch):
    nothing = env_example_values() | {"CHURN_BOOTSTRAP_DEMO": "false"}
    code, calls, output = run_in_process(*bootstrap_command(nothing, tmp_path), monkeypatch)
    assert (code, calls) == (1, [])
    assert output.startswith("bootstrap: nothing to build the first model on: set ")
    assert len(output.strip().splitlines()) == 1


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
    top = {package.split(".")[0] for package in packages}
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for name in top
        for init in (ROOT / name).rglob("__init__.py")
    }
    assert on_disk == set(packages), (
        "a package left out of pyproject's list is left out of the wheel"
    )
    assert "feature_store.yaml" in project["tool"]["setuptools"]["package-data"]["feature_repo"]
    sources = [
        shlex.split(args)[:-1]
        for op, args in instructions(image)
        if op == "COPY" and "--from=" not in args
    ]
    sources = [s for group in sources for s in group if not s.startswith("--")]
    assert top <= set(sources), f"Dockerfile.{image} misses a package"
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

# The packages whose every module the ml and spark images import.
EVERY_PACKAGE = ["churn", "ingestion", "feature_repo", "served", "training", "online_api",
                 "batch", "monitor"]  # fmt: skip
IMAGE_IMPORTS = {
    # `churn serve`: the CLI, the app and what it loads, uvicorn's standard event loop and parser.
    "api": (
        [
            "churn.cli",
            "feature_repo.store",
            "served.registry",
            "uvicorn.loops.uvloop",
            "uvicorn.protocols.http.httptools_impl",
            "prometheus_client.multiprocess",
        ],
        ["online_api"],
    ),
    # Every module of the package, and the `feast` CLI that `churn features apply` runs.
    "ml": (
        ["feast.cli.cli"],
        EVERY_PACKAGE,
    ),
    # The same, with the Spark modules and Feast's Spark offline store.
    "spark": (
        [
            "feast.cli.cli",
            "feast.infra.offline_stores.contrib.spark_offline_store.spark",
            "core.spark_engine",
            "batch.spark_predict",
        ],
        EVERY_PACKAGE,
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


# --- the commands the services run ----------------------------------------------------------


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


@pytest.mark.parametrize("kind", ["files", "source", "demo", "reload"])
def test_the_bootstrap_s_steps_are_commands_of_the_cli(kind, tmp_path):
    from churn.bootstrap import DataChoice, bootstrap_steps

    portal = (tmp_path / "users.parquet", tmp_path / "events.csv")
    choice = None if kind == "reload" else DataChoice(kind, portal if kind == "files" else None,
                                                      users=300, days=120)  # fmt: skip
    settings = Settings(data_dir=tmp_path, artifacts_dir=tmp_path)
    steps = bootstrap_steps(settings, choice, datetime(2026, 3, 1, 5, tzinfo=UTC))
    for _, argv in steps:
        assert_churn_command(["churn", *argv])
    commands = [" ".join(argv[:2]) for _, argv in steps]
    if kind == "reload":  # a production model exists: no data, no model changes
        assert commands == ["features apply", "features materialize"]
    else:
        first = {"files": "data ingest", "source": "data ingest", "demo": "data generate"}
        assert commands[0] == first[kind] and commands[-2:] == ["promote", "features materialize"]
        assert ("--start" in steps[0][1]) == (kind == "demo")  # the demo's days end on 2026-02-28
