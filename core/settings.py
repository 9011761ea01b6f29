"""The one settings object: every path, constant and threshold a user may change.

Read once (``get_settings()``) and passed down as an argument. Values come from
``CHURN_*`` environment variables, then an optional ``churn.yaml`` (path in
``CHURN_CONFIG_FILE``, default ``./churn.yaml``, both looked up when the settings are
built), then the defaults below. Values only: what Feast and Spark make of them is
rendered beside their users (``feature_repo/config.py``, ``core/spark_engine.py``).
A ``CHURN_*`` variable that nothing reads (retired, or misspelt) stops the run
(``check_variables``) rather than be ignored.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from cronsim import CronSim, CronSimError
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from core.redaction import HIDDEN, redact

# Names the churn.yaml to read; a missing file is no error (every value has a default).
CONFIG_FILE_VARIABLE = "CHURN_CONFIG_FILE"
# Variables that once meant something: set, they stop the run rather than be ignored, since
# whoever set one expects it to act. The value says what replaces it.
RETIRED = {
    "CHURN_MIN_PR_AUC_LIFT": "CHURN_MIN_PR_AUC_SKILL, (PR-AUC - base rate) / (1 - base rate): "
    "a lift cannot reach 2 once half the users churn",
    "CHURN_MIN_PRECISION_AT_K": "nothing: precision@K is reported, not gated",
    "CHURN_REALIZED_PR_AUC_LIFT_FLOOR": "CHURN_REALIZED_PR_AUC_SKILL_FLOOR (a skill, as the "
    "gate's; 0.10 by default)",
}
# CHURN_* variables that are not settings but are read or set on purpose. Any other name no
# setting reads stops the run (check_variables), as a retired one does: CHURN_HORIZON_DAY=90
# must not run with a 30-day horizon. The value says who reads or sets it.
NOT_SETTINGS = {
    CONFIG_FILE_VARIABLE: "names the churn.yaml; read before the settings are",
    "CHURN_TEST_POSTGRES_URL": "the PostgreSQL the tests and benchmarks create databases on",
    # feature_store.yaml's ${CHURN_…} variables, rendered from the settings
    # (feature_repo/config.py, yaml_variables): `churn env` and the activated virtualenv
    # export them, the feast commands the CLI starts get them, and the Feast definitions
    # build the settings in that environment.
    "CHURN_FEAST_REGISTRY_TYPE": "feature_store.yaml: file or sql",
    "CHURN_FEAST_REGISTRY": "feature_store.yaml: the registry's path or URL",
    "CHURN_FEAST_OFFLINE_STORE": "feature_store.yaml: the offline store block",
    "CHURN_FEAST_BATCH_ENGINE": "feature_store.yaml: the batch engine block",
    "CHURN_FEAST_REDIS_TYPE": "feature_store.yaml: redis or redis_cluster",
    "CHURN_FEAST_REDIS": "feature_store.yaml: the Redis connection string",
    "CHURN_ONLINE_KEY_TTL_SECONDS": "feature_store.yaml: the Redis key TTL",
    # `churn bootstrap`'s options (churn/bootstrap.py), as compose and Kubernetes set them.
    "CHURN_BOOTSTRAP_DATA": "churn bootstrap: the folder of users.* and events.* to ingest",
    "CHURN_BOOTSTRAP_DEMO": "churn bootstrap: build on demo data when no folder or source is set",
    "CHURN_BOOTSTRAP_USERS": "churn bootstrap: users of the demo world",
    "CHURN_BOOTSTRAP_DAYS": "churn bootstrap: days of the demo world",
    # .env (a shell that sources it exports these too) and the Kubernetes Secret.
    "CHURN_SOURCE_PASSWORD": "the source database's password, handed to libpq as PGPASSWORD",
    "CHURN_IMAGE_TAG": "the tag of the images compose builds",
}
# What Kubernetes puts in every pod for each Service of its namespace (the churn-api Service
# gives CHURN_API_SERVICE_HOST, CHURN_API_PORT_8000_TCP_ADDR…): not ours to refuse.
_SERVICE_LINK = re.compile(
    r"_SERVICE_HOST$|_SERVICE_PORT(_[A-Z0-9_]+)?$|_PORT_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?$"
)
_SERVICE_LINK_URL = re.compile(r"^(tcp|udp|sctp)://")  # the value of <SERVICE>_PORT


class UnknownVariableError(ValueError):
    """A ``CHURN_*`` variable no setting reads (retired, or misspelt); the message is one line
    naming it and what to use instead."""


def known_variables() -> frozenset[str]:
    """Every ``CHURN_*`` name that is read: each setting's, and ``NOT_SETTINGS``."""
    settings = {f"CHURN_{name.upper()}" for name in Settings.model_fields}
    return frozenset(settings | NOT_SETTINGS.keys())


def check_variables(environ: Mapping[str, str]) -> None:
    """Refuse the ``CHURN_*`` variables of ``environ`` that nothing reads, since whoever set
    one expects it to act: a retired name says what replaces it, any other the closest
    known name. Names are compared in upper case, as the settings read them."""
    known = known_variables()
    problems = []
    for name, value in sorted(environ.items()):
        upper = name.upper()
        if not upper.startswith("CHURN_") or upper in known or _service_link(upper, value):
            continue
        if upper in RETIRED:
            problems.append(f"{name} is no longer read: use {RETIRED[upper]}")
        elif closest := _closest(upper, known):
            problems.append(f"{name} is not a setting: did you mean {closest}?")
        else:
            problems.append(f"{name} is not a setting, nor like any setting's name")
    if problems:
        raise UnknownVariableError("; ".join(problems))


def _service_link(name: str, value: str) -> bool:
    return bool(_SERVICE_LINK.search(name)) or (
        name.endswith("_PORT") and bool(_SERVICE_LINK_URL.match(value))
    )


def _closest(name: str, known: frozenset[str]) -> str | None:
    # Compared without the prefix they all share: CHURN_ZZZ is like no setting, not CHURN_SEED.
    by_suffix = {k.removeprefix("CHURN_"): k for k in known}
    found = difflib.get_close_matches(name.removeprefix("CHURN_"), sorted(by_suffix), n=1)
    return by_suffix[found[0]] if found else None


# The name of every monitor's history (``core.history``), in the folder of its reports.
HISTORY_FILE = "history.jsonl"


def history_path(folder: Path) -> Path:
    """The history kept in ``folder``: ``folder/history.jsonl`` (the one naming rule)."""
    return folder / HISTORY_FILE


# The demo generator's ground truth, in ``Settings.ground_truth_dir``: the properties
# ``truth_*_path`` name them; a reader handed only the folder (``training.references``) too.
TRUTH_DAILY_FILE, TRUTH_USERS_FILE, TRUTH_SAVES_FILE = (
    "daily.parquet",
    "users.parquet",
    "saves.parquet",
)

# A size as DuckDB writes one: 3GB, 1.5 GiB (KB, MB… are powers of 1000; KiB, MiB… of 1024).
BYTES_PATTERN = r"^\d+(\.\d+)?\s*[KMGT]i?B$"


def parse_bytes(text: str) -> int:
    """``"6GB"`` → 6,000,000,000; ``"1.5 GiB"`` → 1,610,612,736 (``BYTES_PATTERN``)."""
    number = text.rstrip("BiKMGT ").strip()
    unit = text[len(number) :].strip()
    powers = {"K": 1, "M": 2, "G": 3, "T": 4}
    if unit[:1] not in powers or unit not in (f"{unit[0]}B", f"{unit[0]}iB"):
        raise ValueError(f"{text!r} is not a size like 6GB or 1.5GiB")
    base = 1024 if unit.endswith("iB") else 1000
    return int(float(number) * base ** powers[unit[0]])


class Settings(BaseSettings):
    """Configuration of every stage; paths are derived from ``data_dir`` and ``artifacts_dir``."""

    model_config = SettingsConfigDict(
        env_prefix="CHURN_",
        extra="forbid",
        frozen=True,
        # An error names the setting, never echoes its value: it may hold a password.
        hide_input_in_errors=True,
    )

    data_dir: Path = Field(Path("data"), description="Root of every data table and the registry")
    artifacts_dir: Path = Field(Path("artifacts"), description="Models, reports, plots")
    export_dir: Path | None = Field(
        None,
        description="Where each night's high-risk list is delivered to the retention team, "
        "e.g. a mounted volume: high_risk_YYYY-MM-DD.csv (T's date), high_risk_latest.csv, "
        "then latest.json (date, rows, columns, model, sha256), dated lists kept "
        "CHURN_HORIZON_DAYS nights; created when its parent exists; unset = no export",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Online store (Redis URL)")
    redis_cluster: bool = Field(
        False,
        description="CHURN_REDIS_URL is a node of a Redis Cluster (keys spread over its nodes)",
    )
    redis_private_port: int = Field(
        6391, ge=1, le=65535, description="Port of the private redis-server started when needed"
    )
    feast_project: str = Field(
        "churn", pattern=r"^[A-Za-z0-9_]+$", description="Feast project (namespaces Redis keys)"
    )
    feast_registry_url: str | None = Field(
        None,
        description="Feast SQL registry (SQLAlchemy URL); unset = a registry file in the data dir",
    )
    horizon_days: int = Field(30, ge=1, le=365, description="Churn = no activity this long")
    windows: Annotated[tuple[int, ...], NoDecode] = Field(
        (7, 14, 30), description="Rolling windows in days (comma list)"
    )
    seed: int = Field(
        42,
        description="Seed of every random draw: the demo data, the models and their tuning "
        "sample, the importance sample, the skew check's users",
    )
    max_event_age_hours: float = Field(
        48.0, ge=0, description="Freshness gate: newest event at most this old (0 = off)"
    )
    volume_factor: float = Field(
        3.0,
        gt=1,
        description="Volume gate: events within [prev/f, prev*f] of the last accepted run",
    )
    validation_severity: Annotated[dict[str, Literal["error", "warn", "off"]], NoDecode] = Field(
        default_factory=dict,
        description="Validation rules relaxed from error to warn or off, e.g. "
        "duplicate_events=warn,volume=off (docs/your-data.md lists the rules)",
    )
    source: SecretStr | None = Field(
        None,
        description="Where `churn data ingest` reads when given no files: the portal's "
        "database, postgresql://user@host:5432/db (its password from PGPASSWORD, or in this "
        "URL set in the environment, never in a file), or a landing folder, dir:///path",
    )
    source_users: str = Field(
        "users", description="PostgreSQL source: the users table, or a SELECT returning them"
    )
    source_events: str = Field(
        "events", description="PostgreSQL source: the events table, or a SELECT returning them"
    )
    source_columns: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="PostgreSQL source: contract column=source column pairs where the names "
        "differ, e.g. event_time=created_at,event_type=kind",
    )
    source_mark_column: str | None = Field(
        None,
        description="PostgreSQL source: the events column the high-water mark follows (a "
        "commit or insert time is best); unset = the events' event_time",
    )
    source_lookback_hours: float = Field(
        48.0,
        ge=0,
        description="PostgreSQL source: each run re-reads this far behind the mark, for rows "
        "committed late (rows already stored are not stored twice)",
    )
    source_chunk_rows: int = Field(
        100_000, ge=1000, description="Rows per chunk read from a source (bounds memory)"
    )
    drop_duplicate_events: bool = Field(
        False,
        description="Drop events that repeat another under a new id (keep the lowest event_id) "
        "instead of failing duplicate_events",
    )
    feature_ttl_days: int = Field(
        3, ge=1, description="Feast view TTL: a feature row older than this is not served"
    )
    online_key_ttl_days: int = Field(
        14, ge=1, description="Redis key TTL: users not re-materialized this long expire"
    )
    materialize_writer: Literal["fast", "feast"] = Field(
        "fast",
        description="Who writes the online store: fast (numpy into Feast's Redis layout, "
        "about 10x Feast's writer; one Redis server and the DuckDB engine, else Feast's) "
        "or feast (Feast's own materialize)",
    )
    materialize_niceness: int = Field(
        10,
        ge=0,
        le=19,
        description="Niceness materialize runs at (0-19): on cores it shares with the API, "
        "the API's requests run first",
    )
    asof_stride_days: int = Field(1, ge=1, description="Days between training as-of times")
    active_lookback_days: int = Field(
        14, ge=1, description="Scored population: active at least once this many days before T"
    )
    validation_days: int = Field(7, ge=1, description="The last as-of days held out to validate")
    calibration_days: int = Field(
        4, ge=1, description="As-of days before the embargo held out to calibrate probabilities"
    )
    top_k: int = Field(
        50, ge=1, description="K of precision@K: the retention team's list, per night"
    )
    min_roc_auc: float = Field(0.60, ge=0, le=1, description="Promotion floor: ROC-AUC")
    min_pr_auc_skill: float = Field(
        0.15,
        ge=0,
        lt=1,
        description="Promotion floor: PR-AUC skill, (PR-AUC - base rate) / (1 - base rate), "
        "the share of the possible gain over a random ranking",
    )
    recency_margin: float = Field(
        0.005,
        ge=0,
        description="A candidate must beat the recency-only reference's PR-AUC and ROC-AUC "
        "by this much",
    )
    promotion_margin: float = Field(
        0.005, ge=0, description="A candidate must beat production's PR-AUC by this much"
    )
    tuning_budget: int = Field(
        4,
        ge=1,
        le=6,
        description="Configurations tried per model kind on forward, user-disjoint folds (1 = defaults only)",
    )
    api_host: str = Field("127.0.0.1", description="Where `churn serve` listens")
    api_port: int = Field(8000, ge=1, le=65535, description="Port of `churn serve`")
    api_workers: int = Field(1, ge=1, description="uvicorn worker processes")
    risk_band_medium: float = Field(0.15, gt=0, lt=1, description="Risk from here on is medium")
    risk_band_high: float = Field(0.35, gt=0, lt=1, description="Risk from here on is high")
    api_redis_timeout_ms: int = Field(
        100, ge=1, description="API's Redis client timeout: past it, 503 with Retry-After"
    )
    api_batch_max: int = Field(1000, ge=1, description="Most user ids in one batch request")
    api_token: SecretStr | None = Field(
        None, description="Bearer token the scoring endpoints require (unset = open)"
    )
    model_reload_seconds: float = Field(
        1.0, gt=0, description="How often the API checks the production alias"
    )
    outreach_reload_seconds: float = Field(
        5.0,
        gt=0,
        description="How often the API looks for a newer night's outreach list (the answers' "
        "listed and arm)",
    )
    nightly_cron: str = Field(
        "0 2 * * *", description="When `churn schedule` runs the nightly jobs (cron, UTC)"
    )
    pushgateway_url: str | None = Field(
        None,
        description="Prometheus Pushgateway for job metrics, e.g. http://host:9091 (unset = none)",
    )
    psi_warn: float = Field(0.1, gt=0, description="Drift: PSI from here on is a warning")
    drift_ignore_features: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None,
        description="Drift: features whose PSI is reported, not counted (comma list); unset = "
        "those that grow with time by nature, tenure_days and every feature that looks back to "
        "the first day (feature_repo.spec.ageing_features, listed in the features reference)",
    )
    psi_alert: float = Field(0.25, gt=0, description="Drift: PSI from here on is an alert")
    max_model_age_days: int = Field(
        30, ge=1, description="Retrain when the production model is older than this"
    )
    realized_pr_auc_skill_floor: float = Field(
        0.10,
        ge=0,
        lt=1,
        description="Retrain when realized PR-AUC skill, (PR-AUC - base rate) / (1 - base rate), "
        "falls below this; under min_pr_auc_skill so noise around a model the gate passed "
        "does not retrain",
    )
    calibration_error_alert: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="Realized outcomes: a night's expected calibration error (10 equal-mass "
        "bins) above this says the probabilities, and so the performance estimate, are off",
    )
    estimate_draws: int = Field(
        200,
        ge=20,
        description="Label draws behind the nightly estimate's PR-AUC and ROC-AUC and their "
        "5-95 % band (`churn monitor estimate`); time grows with draws x scored users",
    )
    estimate_alert_nights: int = Field(
        3,
        ge=1,
        description="Alert (and, with CHURN_RETRAIN_ON_ESTIMATE, retrain) when the estimated "
        "PR-AUC skill stays under CHURN_REALIZED_PR_AUC_SKILL_FLOOR this many nights in a row",
    )
    retrain_on_estimate: bool = Field(
        False,
        description="retrain-if-needed also fires on the estimate: estimated PR-AUC skill under "
        "the floor for CHURN_ESTIMATE_ALERT_NIGHTS nights (before any label can confirm it)",
    )
    holdout_share: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of each night's high-risk list kept back from outreach (the holdout "
        "arm), to measure whether contacting works; 0 turns the holdout off",
    )
    holdout_period_days: int = Field(
        30,
        ge=1,
        description="A user keeps their arm (contact or holdout) for the nights of one period "
        "of this many days; the next period draws again",
    )
    uplift_alert_horizons: int = Field(
        3,
        ge=1,
        description="Alert when the contacted arm churned no less than holdout in this many "
        "consecutive horizons",
    )
    outreach_effect: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Demo generator only: how much outreach cuts a contacted user's daily churn "
        "hazard for the horizon (0.2 = by 20 %); 0 = outreach changes nothing",
    )
    skew_sample: int = Field(
        1000, ge=1, description="Users sampled by the online/offline skew check"
    )
    duckdb_memory_limit: str = Field(
        "3GB", pattern=BYTES_PATTERN, description="DuckDB memory cap (spills beyond)"
    )
    duckdb_threads: int = Field(0, ge=0, description="DuckDB threads (0 = all cores)")
    memory_budget: str = Field(
        "6GB",
        pattern=BYTES_PATTERN,
        description="What one stage may hold in memory; training derives from it how many "
        "users to fit on, and stops before it starts when it cannot hold a useful sample",
    )
    train_max_users: int = Field(
        0,
        ge=0,
        description="Users training fits on, drawn whole by a hash of the id (0 = as many as "
        "CHURN_MEMORY_BUDGET holds); validation scores every user",
    )
    engine: Literal["duckdb", "spark"] = Field(
        "duckdb",
        description="Where the feature build, point-in-time joins and batch run: duckdb or spark",
    )
    spark_master: str = Field(
        "local[2]",
        description="Spark master for CHURN_ENGINE=spark (ignored under spark-submit, which sets it)",
    )
    spark_driver_memory: str = Field(
        "2g", pattern=r"^\d+[kmgt]?$", description="Spark driver heap (local mode: all of Spark)"
    )
    spark_shuffle_partitions: int = Field(
        8, ge=1, description="Spark partitions after a shuffle (about 2-3 per executor core)"
    )

    @field_validator("windows", "drift_ignore_features", mode="before")
    @classmethod
    def _parse_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.replace(" ", "").split(",") if part]
        return value

    @field_validator("validation_severity", "source_columns", mode="before")
    @classmethod
    def _parse_pairs(cls, value: object, info: ValidationInfo) -> object:
        """``key=value`` pairs, comma-separated (environment) or a mapping (churn.yaml)."""
        if isinstance(value, dict):  # YAML reads a bare `off` as false
            return {key: "off" if level is False else level for key, level in value.items()}
        if not isinstance(value, str):
            return value
        pairs = [part for part in value.replace(" ", "").split(",") if part]
        if bad := [part for part in pairs if part.count("=") != 1]:
            field = info.field_name or ""  # always set for a field validator
            wants = {"validation_severity": "rule=error|warn|off",
                     "source_columns": "contract_column=source_column"}[field]  # fmt: skip
            raise ValueError(f"CHURN_{field.upper()} wants {wants} pairs, got {bad[0]!r}")
        return dict(part.split("=") for part in pairs)

    @field_validator("windows")
    @classmethod
    def _check_windows(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("CHURN_WINDOWS needs at least one window, e.g. 7,14,30")
        if any(w < 1 or w > 366 for w in value):
            raise ValueError(f"CHURN_WINDOWS must be days between 1 and 366, got {value}")
        if len(set(value)) != len(value):
            raise ValueError(f"CHURN_WINDOWS has duplicates: {value}")
        return tuple(sorted(value))

    @field_validator(
        "drift_ignore_features",  # as_env renders None as "": unset again, the spec's features
        "feast_registry_url",
        "api_token",
        "pushgateway_url",
        "source",
        "source_mark_column",
        "export_dir",  # as_env renders None as "": it must not come back as Path(".")
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return value or None

    @field_validator("nightly_cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        try:
            CronSim(value, datetime.now(UTC))
        except CronSimError as exc:
            raise ValueError(
                f"CHURN_NIGHTLY_CRON {value!r} is not a cron expression: {exc}"
            ) from exc
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
            raise ValueError(
                f"CHURN_REDIS_URL must look like redis://host:6379/0, got {redact(value)!r}"
            )
        return value

    @model_validator(mode="after")
    def _cluster_has_no_databases(self) -> Settings:
        if self.redis_cluster and urlparse(self.redis_url).path.lstrip("/") not in ("", "0"):
            raise ValueError(
                f"CHURN_REDIS_URL {redact(self.redis_url)!r} names a database, which a Redis "
                "Cluster does not have: use redis://host:port (Feast projects keep environments "
                "apart)"
            )
        return self

    @model_validator(mode="after")
    def _absolute_paths(self) -> Settings:
        # Frozen model: resolve once so every stage sees the same absolute paths.
        object.__setattr__(self, "data_dir", self.data_dir.expanduser().resolve())
        object.__setattr__(self, "artifacts_dir", self.artifacts_dir.expanduser().resolve())
        if self.export_dir is not None:
            object.__setattr__(self, "export_dir", self.export_dir.expanduser().resolve())
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Checked here, where the environment is read, before validation: a retired or
        # misspelt name arrives as its own one-line error, not inside pydantic's report.
        check_variables(os.environ)
        # The file is looked up now, not at import: CHURN_CONFIG_FILE set later still counts.
        config_file = os.environ.get(CONFIG_FILE_VARIABLE, "churn.yaml")
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls, config_file))

    @property
    def memory_budget_bytes(self) -> int:
        """``memory_budget`` in bytes."""
        return parse_bytes(self.memory_budget)

    @property
    def duckdb_memory_bytes(self) -> int:
        """DuckDB's cap: ``duckdb_memory_limit``, within the memory budget (a stage holds it)."""
        return min(parse_bytes(self.duckdb_memory_limit), self.memory_budget_bytes)

    # Derived paths: the only place a file name is written down. The product and the tests
    # read these; on-disk names are kept as they were, so an existing data dir stays readable.
    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def validated_dir(self) -> Path:
        return self.data_dir / "validated"

    @property
    def validated_users_path(self) -> Path:
        """The validated users, one row each."""
        return self.validated_dir / "users.parquet"

    @property
    def validated_events_path(self) -> Path:
        """The validated events: ``date=D/events.parquet``, raw day D's, checked, sorted by time."""
        return self.validated_dir / "events"

    @property
    def validated_events_legacy_path(self) -> Path:
        """The validated events of a data dir validated before they were kept by day: read
        until the next validation, which removes it."""
        return self.validated_dir / "events.parquet"

    @property
    def validated_manifest_path(self) -> Path:
        """The last accepted validation: totals, newest event, each day's raw file and stats."""
        return self.validated_dir / "manifest.json"

    @property
    def tables_dir(self) -> Path:
        return self.data_dir / "tables"

    @property
    def ground_truth_dir(self) -> Path:
        """Hidden state of the demo generator: for evaluation only, never a feature."""
        return self.data_dir / "ground_truth"

    @property
    def truth_daily_path(self) -> Path:
        """The demo generator's hidden state per user and day (the oracle reads it)."""
        return self.ground_truth_dir / TRUTH_DAILY_FILE

    @property
    def truth_users_path(self) -> Path:
        """The demo generator's hidden traits per user (the oracle reads it)."""
        return self.ground_truth_dir / TRUTH_USERS_FILE

    @property
    def truth_saves_path(self) -> Path:
        """The demo generator's record of the users outreach kept."""
        return self.ground_truth_dir / TRUTH_SAVES_FILE

    @property
    def reports_dir(self) -> Path:
        return self.artifacts_dir / "reports"

    @property
    def user_daily_path(self) -> Path:
        return self.tables_dir / "user_daily"

    @property
    def user_courses_path(self) -> Path:
        """The first day each user touched each course: the state of the lifetime course count."""
        return self.tables_dir / "user_courses"

    @property
    def features_path(self) -> Path:
        return self.data_dir / "features" / "user_features"

    @property
    def registry_path(self) -> Path:
        return self.data_dir / "feast" / "registry.db"

    @property
    def predictions_dir(self) -> Path:
        """Nightly batch output: ``as_of=YYYY-MM-DD/`` per run."""
        return self.data_dir / "predictions"

    @property
    def outreach_dir(self) -> Path:
        """The holdout experiment's assignments: ``date=YYYY-MM-DD/`` per night's list."""
        return self.data_dir / "outreach" / "assignments"

    @property
    def monitoring_dir(self) -> Path:
        """Drift, outcome, skew and retraining reports and their histories."""
        return self.artifacts_dir / "monitoring"

    @property
    def drift_dir(self) -> Path:
        """Drift's reports and charts, ``as_of=<date>.json`` and ``.png`` (``monitor.drift``)."""
        return self.monitoring_dir / "drift"

    @property
    def drift_history_path(self) -> Path:
        """``core.history``: a line per report, the newest of a date counts."""
        return history_path(self.drift_dir)

    @property
    def outcomes_dir(self) -> Path:
        """Realized outcomes: the history and ``reliability/as_of=<date>.png`` (``monitor.outcomes``)."""
        return self.monitoring_dir / "outcomes"

    @property
    def outcomes_history_path(self) -> Path:
        """``core.history``: the newest line of a batch date counts."""
        return history_path(self.outcomes_dir)

    @property
    def uplift_dir(self) -> Path:
        """The outreach uplift's newest report and chart and its history (``monitor.uplift``)."""
        return self.monitoring_dir / "uplift"

    @property
    def uplift_history_path(self) -> Path:
        """``core.history``: the newest line of a night counts."""
        return history_path(self.uplift_dir)

    @property
    def retrain_dir(self) -> Path:
        """The retraining loop's decisions (``monitor.retrain``)."""
        return self.monitoring_dir / "retrain"

    @property
    def retrain_history_path(self) -> Path:
        """``core.history``: a line per decision, retrain or not."""
        return history_path(self.retrain_dir)

    @property
    def estimate_dir(self) -> Path:
        """The nightly estimate's reports, charts and history (``monitor.estimate``)."""
        return self.monitoring_dir / "estimate"

    @property
    def estimate_history_path(self) -> Path:
        """``core.history``: the newest line of a night counts."""
        return history_path(self.estimate_dir)

    @property
    def nights_path(self) -> Path:
        """The nights' history: each ``churn nightly`` run, its steps and their exit codes."""
        return history_path(self.monitoring_dir / "nightly")

    @property
    def models_dir(self) -> Path:
        """The model registry: one directory per version, an index, the production alias."""
        return self.artifacts_dir / "models"

    def as_env(self, redacted: bool = False) -> dict[str, str]:
        """Every setting as ``CHURN_*`` variables, so a subprocess sees the same settings.

        ``redacted``: as a person may see them (``churn env``, a record), every password
        ``***`` (``core.redaction``) and a secret that is not a URL (the API token) all ``***``.
        """
        env = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
                if redacted and value and "://" not in value:
                    value = HIDDEN  # a token: no part of it may show
            if value is None:
                text = ""
            elif isinstance(value, tuple):
                text = ",".join(map(str, value))
            elif isinstance(value, dict):
                text = ",".join(f"{k}={v}" for k, v in value.items())
            else:
                text = str(value)
            env[f"CHURN_{name.upper()}"] = redact(text) if redacted else text
        return env

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A traceback or a log may show the settings: a Redis or registry URL's password too.
        for name, value in super().__repr_args__():
            yield name, redact(value) if isinstance(value, str) else value


def get_settings(**overrides: Any) -> Settings:
    """Settings from the environment (and ``churn.yaml``), with explicit overrides on top
    (validated as the environment's values are: any type a field accepts)."""
    return Settings(**overrides)
