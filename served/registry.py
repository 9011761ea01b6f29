"""The model registry: one directory per version under ``models_dir``, never overwritten.

Layout::

    models_dir/<version>/model.joblib, metadata.json, plots…   written once, renamed into place
    models_dir/index.jsonl        one line per saved version
    models_dir/production.json    the production alias (replaced atomically)
    models_dir/promotions.jsonl   every switch of the alias
    models_dir/decisions.jsonl    every promotion gate decision (``training.promote``)

The ``.jsonl`` files are append-only histories (``core.history``: locked, fsynced).

Rollback walks back along the promotions: ``production.json`` carries the chain
of versions it replaced (``rollback_chain``, newest first, ``previous`` is its
head), so promote A, B, C then rollback → B, rollback → A, rollback → error.
Model files are pickles: load only registries you trust.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import joblib

from core.atomic import atomic_dir, write_text
from core.history import HistoryError, append_record, read_records

if TYPE_CHECKING:  # the registry reads index files without loading pandas
    import numpy as np
    import pandas as pd

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
INDEX_FILE = "index.jsonl"
PRODUCTION_FILE = "production.json"
HISTORY_FILE = "promotions.jsonl"
LOCK_FILE = ".registry.lock"
HEADLINE_METRICS = ("pr_auc", "roc_auc", "precision_at_k")
# A version names a directory: no separators, no leading dot (temporaries start with one).
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Classifier(Protocol):
    """A fitted model as scoring uses it: scikit-learn's ``predict_proba`` (column 1: churn)."""

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray: ...


class RegistryError(RuntimeError):
    """The registry cannot do what was asked; the message says why and names the file."""


def new_version(created_at: datetime, fingerprint: str) -> str:
    """``YYYYMMDDTHHMMSSZ-<first 8 of fingerprint>``: sorts by time, unique per training run."""
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware (UTC), got a naive datetime")
    if len(fingerprint) < 8 or not _VERSION.match(fingerprint[:8]):
        raise ValueError(f"fingerprint must start with 8 letters or digits, got {fingerprint!r}")
    return f"{created_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{fingerprint[:8]}"


def save_model(
    models_dir: Path,
    version: str,
    model: object,
    metadata: dict,
    files: dict[str, Path] | None = None,
) -> Path:
    """Store ``model`` as ``version`` (built aside, renamed in) and index it; return its directory.

    ``metadata`` must be JSON-serialisable (dates become strings); its ``created_at``,
    ``model_kind`` and ``metrics`` (pr_auc, roc_auc, precision_at_k) go into the index.
    ``files`` are copied in under their given names (e.g. plots).
    """
    target = _version_dir(models_dir, version)
    files = files or {}
    for name in files:
        if "/" in name or name.startswith(".") or name in (MODEL_FILE, METADATA_FILE):
            raise RegistryError(f"cannot store extra file as {name!r} in version {version}")
    if target.exists():
        raise RegistryError(
            f"version {version} already exists in {models_dir}; it is never overwritten"
        )
    try:
        # replace=False: a version directory that appeared meanwhile must not vanish.
        with atomic_dir(target, replace=False) as tmp:
            joblib.dump(model, tmp / MODEL_FILE)
            (tmp / METADATA_FILE).write_text(
                json.dumps({**metadata, "version": version}, indent=2, default=_json_default)
                + "\n",
                encoding="utf-8",
            )
            for name, source in files.items():
                shutil.copyfile(source, tmp / name)
            tmp.chmod(0o755)  # mkdtemp makes it private; the API may run as another user
    except FileExistsError as exc:
        raise RegistryError(f"version {version} already exists in {models_dir}") from exc
    metrics = metadata.get("metrics") or {}
    line = {
        "version": version,
        "created_at": _json_default(metadata.get("created_at") or datetime.now(UTC)),
        "model_kind": metadata.get("model_kind") or type(model).__name__,
        "run": metadata.get("run"),  # the versions one training run stored share it
        "metrics": {key: metrics[key] for key in HEADLINE_METRICS if key in metrics},
    }
    append_record(models_dir / INDEX_FILE, line)
    return target


def load_model(models_dir: Path, version: str) -> tuple[Classifier, dict]:
    """``(model, metadata)`` of ``version``; RegistryError naming the file that cannot be read."""
    path = _existing_version_dir(models_dir, version) / MODEL_FILE
    try:
        model = joblib.load(path)
    except Exception as exc:
        raise RegistryError(f"cannot load model file {path}: {type(exc).__name__}: {exc}") from exc
    return model, load_metadata(models_dir, version)


def load_metadata(models_dir: Path, version: str) -> dict:
    """The ``metadata.json`` stored with ``version`` (plus its ``version``)."""
    return _read_json(_existing_version_dir(models_dir, version) / METADATA_FILE)


def list_versions(models_dir: Path) -> list[dict]:
    """Index lines, oldest first; ``[]`` for an empty registry."""
    return _read_lines(models_dir / INDEX_FILE)


def production(models_dir: Path) -> str | None:
    """The version the production alias names, or None before the first promotion."""
    record = _read_production(models_dir)
    return record["version"] if record else None


def history(models_dir: Path) -> list[dict]:
    """Every switch of the production alias (promotions and rollbacks), oldest first."""
    return _read_lines(models_dir / HISTORY_FILE)


def set_production(
    models_dir: Path, version: str, reason: str, now: datetime | None = None
) -> None:
    """Point the production alias at ``version`` (which must exist) and record why."""
    _existing_version_dir(models_dir, version)
    with _locked(models_dir):
        current = _read_production(models_dir)
        if current and current["version"] == version:
            raise RegistryError(f"version {version} is already production")
        chain = [current["version"], *current["rollback_chain"]] if current else []
        _switch(models_dir, version, reason, now, "promote", current, chain)


def rollback(models_dir: Path, reason: str = "rollback", now: datetime | None = None) -> str:
    """Switch production back to the version the current one replaced; return it.

    Repeated rollbacks walk further back; RegistryError when the chain is used up.
    """
    with _locked(models_dir):
        current = _read_production(models_dir)
        if current is None:
            raise RegistryError(f"no production model in {models_dir}: nothing to roll back")
        if not current["rollback_chain"]:
            raise RegistryError(
                f"production {current['version']} replaced no other version: nothing to roll back to"
            )
        target, *chain = current["rollback_chain"]
        _existing_version_dir(models_dir, target)
        _switch(models_dir, target, reason, now, "rollback", current, chain)
        return target


def _switch(
    models_dir: Path,
    version: str,
    reason: str,
    now: datetime | None,
    action: str,
    current: dict | None,
    chain: list[str],
) -> None:
    record = {
        "version": version,
        "promoted_at": (now or datetime.now(UTC)).astimezone(UTC).isoformat(),
        "reason": reason,
        "action": action,
        "replaced": current["version"] if current else None,
        "previous": chain[0] if chain else None,
        "rollback_chain": chain,
    }
    write_text(
        json.dumps(record, indent=2, default=_json_default) + "\n", models_dir / PRODUCTION_FILE
    )
    append_record(
        models_dir / HISTORY_FILE, {k: v for k, v in record.items() if k != "rollback_chain"}
    )


def _version_dir(models_dir: Path, version: str) -> Path:
    if not _VERSION.match(version):
        raise RegistryError(f"invalid model version {version!r}")
    return models_dir / version


def _existing_version_dir(models_dir: Path, version: str) -> Path:
    path = _version_dir(models_dir, version)
    if not (path / MODEL_FILE).exists():
        known = sorted(p.parent.name for p in models_dir.glob(f"[!.]*/{MODEL_FILE}"))
        raise RegistryError(
            f"unknown model version {version} in {models_dir} (newest known: {known[-3:]})"
        )
    return path


def _read_production(models_dir: Path) -> dict | None:
    path = models_dir / PRODUCTION_FILE
    if not path.exists():
        return None
    record = _read_json(path)
    if not isinstance(record.get("version"), str):
        raise RegistryError(f"corrupt registry file {path}: no version")
    record.setdefault("rollback_chain", [])
    return record


def _read_json(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistryError(f"corrupt or unreadable registry file {path}: {exc}") from exc
    if not isinstance(record, dict):
        raise RegistryError(f"corrupt registry file {path}: expected a JSON object")
    return record


def _read_lines(path: Path) -> list[dict]:
    try:
        return read_records(path)
    except HistoryError as exc:
        raise RegistryError(str(exc)) from exc


def _json_default(value: object) -> str:
    """Dates as ISO 8601 (``T``, offset), so they parse back with ``datetime.fromisoformat``."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


@contextmanager
def _locked(models_dir: Path) -> Iterator[None]:
    """Serialise alias switches: each reads production.json to build the next one."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
