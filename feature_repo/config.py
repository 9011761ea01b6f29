"""``feature_store.yaml``'s values, rendered from the settings.

The committed ``feature_store.yaml`` describes the store for every environment: what
differs between them is a ``${CHURN_…}`` variable, which Feast expands from the
environment (``os.path.expandvars``: an unset variable stays as written and fails
Feast's validation). This module computes those values from a ``Settings``. The churn
CLI and jobs fill the file with them in-process (``filled_config``) and give them to the
``feast`` commands they start (``feast_environment``); compose and Kubernetes run those.

Plain ``feast`` in this directory finds them in the activated virtualenv: ``make
install`` appends to ``.venv/bin/activate`` a line that exports what ``churn env``
prints (``feast_environment`` for the settings of this checkout). We chose that over a
generated, uncommitted concrete ``feature_store.yaml`` because the Feast definitions are
Python that reads the settings too (``data_sources.py``: the Parquet path under the data
dir; ``features.py``: the windows and the TTL). A concrete yaml alone would leave
``feast apply`` in ``feature_repo/`` registering a source under ``feature_repo/data``
(the default data dir, resolved from there); with the settings in the environment, the
yaml, the definitions and the churn CLI agree, and every environment keeps one file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml

from core.redaction import redact
from core.settings import Settings

REPO_DIR = Path(__file__).resolve().parent
FEATURE_STORE_YAML = REPO_DIR / "feature_store.yaml"
_VARIABLE = re.compile(r"\$\{(CHURN_[A-Z0-9_]+)\}")


def redis_connection_string(settings: Settings, timeout_ms: int | None = None) -> str:
    """``CHURN_REDIS_URL`` in Feast's ``host:port,db=N,password=…`` form.

    ``timeout_ms`` adds client socket timeouts: the API wants them short (a
    slow Redis must not hang a request); bulk jobs (materialize) must not.
    """
    parsed = urlparse(settings.redis_url)
    # One node is enough for a cluster: the client learns the others and the slots from it.
    parts = [f"{parsed.hostname}:{parsed.port or 6379}"]
    if not settings.redis_cluster:
        parts.append(f"db={parsed.path.lstrip('/') or '0'}")
    if parsed.password:
        parts.append(f"password={unquote(parsed.password)}")
    if parsed.username:
        parts.append(f"username={unquote(parsed.username)}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    if timeout_ms is not None:
        seconds = timeout_ms / 1000
        parts += [f"socket_timeout={seconds}", f"socket_connect_timeout={seconds}"]
        # No retries: redis-py's default retries 3 times with up to 10 s backoff. A
        # cluster client retries per command instead, after a refresh of its slots.
        parts.append("cluster_error_retry_attempts=0" if settings.redis_cluster else "retry=null")
    return ",".join(parts)


def offline_store(settings: Settings) -> dict[str, object]:
    """The ``offline_store`` block for the engine: DuckDB, or Spark with our session's conf."""
    if settings.engine == "spark":
        # Imported here: only the Spark engine needs pyspark.
        from core.spark_engine import spark_conf

        return {"type": "spark", "spark_conf": spark_conf(settings)}
    return {"type": "duckdb"}


def batch_engine(settings: Settings) -> dict[str, object]:
    """The ``batch_engine`` block: who runs ``materialize``.

    On Spark, the executors write to Redis partition by partition (Feast's Spark
    compute engine) instead of the driver alone.
    """
    if settings.engine == "spark":
        from core.spark_engine import spark_conf

        return {
            "type": "spark.engine",
            "spark_conf": spark_conf(settings),
            "partitions": settings.spark_shuffle_partitions,
        }
    return {"type": "local"}


def yaml_variables(settings: Settings, redis_timeout_ms: int | None = None) -> dict[str, str]:
    """The values of the ``${CHURN_…}`` variables ``feature_store.yaml`` uses."""
    return {
        "CHURN_FEAST_PROJECT": settings.feast_project,
        "CHURN_FEAST_REGISTRY_TYPE": "sql" if settings.feast_registry_url else "file",
        "CHURN_FEAST_REGISTRY": settings.feast_registry_url or str(settings.registry_path),
        # JSON is YAML: a block goes in as one flow mapping.
        "CHURN_FEAST_OFFLINE_STORE": json.dumps(offline_store(settings)),
        "CHURN_FEAST_BATCH_ENGINE": json.dumps(batch_engine(settings)),
        "CHURN_FEAST_REDIS_TYPE": "redis_cluster" if settings.redis_cluster else "redis",
        "CHURN_FEAST_REDIS": redis_connection_string(settings, redis_timeout_ms),
        "CHURN_ONLINE_KEY_TTL_SECONDS": str(settings.online_key_ttl_days * 86400),
    }


def feast_environment(settings: Settings, redacted: bool = False) -> dict[str, str]:
    """Every variable plain ``feast`` in this repo reads: the settings (the definitions
    build theirs from the environment) and the yaml's variables. ``churn env`` prints it;
    ``redacted``, as a person may see it, with every password and token ``***``."""
    if not redacted:
        return settings.as_env() | yaml_variables(settings)
    shown = {name: redact(value) for name, value in yaml_variables(settings).items()}
    return settings.as_env(redacted=True) | shown


def filled_config(settings: Settings, redis_timeout_ms: int | None = None) -> dict[str, object]:
    """``feature_store.yaml`` as a mapping, its variables filled from ``settings``.

    ``redis_timeout_ms`` gives the Redis client socket timeouts (the API's).
    """
    values = yaml_variables(settings, redis_timeout_ms)

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise ValueError(
                f"{FEATURE_STORE_YAML} uses ${{{match.group(1)}}}, which no setting provides"
            )
        return values[match.group(1)]

    return yaml.safe_load(_VARIABLE.sub(fill, FEATURE_STORE_YAML.read_text(encoding="utf-8")))
