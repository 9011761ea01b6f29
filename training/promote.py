"""``churn promote``: run the gate on a candidate and switch the production alias if it passes.

Production is scored on the candidate's own validation rows (stored with the
candidate), so the comparison is on the same newest window. ``--version V
--force`` and ``--rollback`` restore an earlier model by an operator's decision.
Every gate decision is appended to ``models_dir/decisions.jsonl`` (``core.history``);
the one-file-per-decision ``decisions/`` of earlier versions is carried over into it
(then removed) by the first promotion after an upgrade.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from core.history import append_record, read_records, start_from
from core.settings import Settings
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from feature_repo.store import open_offline_store
from served import registry
from training.dataset import point_in_time_join
from training.evaluation import evaluate
from training.gate import Decision, Gate, decide
from training.labels import LABEL
from training.train import VALIDATION_ROWS

log = logging.getLogger(__name__)

DECISIONS_FILE = "decisions.jsonl"
LEGACY_DECISIONS_DIR = "decisions"  # one JSON file per decision, named <stamp>-<candidate>-<id>
LEGACY_STAMP = "%Y%m%dT%H%M%S%fZ"


@dataclass(frozen=True)
class PromotionResult:
    decision: Decision
    candidate_metrics: dict
    production_metrics: dict | None
    references: dict | None


def latest_candidate(settings: Settings) -> str:
    """The best model (validation PR-AUC) of the newest training run, from the index alone."""
    versions = registry.list_versions(settings.models_dir)
    if not versions:
        raise registry.RegistryError(f"no models in {settings.models_dir}: run `churn train` first")
    run = [v for v in versions if v.get("run") == versions[-1].get("run")]
    return max(run, key=lambda v: v["metrics"]["pr_auc"])["version"]


def score_on(settings: Settings, version: str, rows: pd.DataFrame) -> dict:
    """Metrics of ``version`` on labelled validation rows (its own features fetched if needed)."""
    model, metadata = registry.load_model(settings.models_dir, version)
    names = [ref.split(":", 1)[1] for ref in metadata["feature_refs"]]
    if not set(names) <= set(rows.columns):
        entity = rows[[ENTITY_KEY, TIMESTAMP_FIELD, LABEL]]
        rows = point_in_time_join(open_offline_store(settings), entity, metadata["feature_refs"])
    scores = model.predict_proba(rows[names])[:, 1]
    return evaluate(
        rows[LABEL].to_numpy(), scores, k=settings.top_k, nights=rows[TIMESTAMP_FIELD].to_numpy()
    )


def promote(
    settings: Settings, version: str | None = None, now: datetime | None = None
) -> PromotionResult:
    """Gate ``version`` (default: the newest run's best) and promote it if it passes."""
    models_dir = settings.models_dir
    _carry_over_legacy(models_dir)  # an unreadable old decision stops us before any switch
    candidate = version or latest_candidate(settings)
    metadata = registry.load_metadata(models_dir, candidate)
    rows = pd.read_parquet(models_dir / candidate / VALIDATION_ROWS)
    candidate_metrics = metadata["metrics"]
    current = registry.production(models_dir)
    production_metrics = None
    if current == candidate:
        production_metrics = candidate_metrics  # same model, same rows: decide() refuses it
    elif current is not None:
        production_metrics = score_on(settings, current, rows)
    # The references were evaluated on the same validation rows when the candidate was trained.
    references = metadata.get("references")
    decision = decide(
        candidate, candidate_metrics, references, current, production_metrics,
        Gate.from_settings(settings),
    )  # fmt: skip
    if decision.promote:
        registry.set_production(models_dir, candidate, "; ".join(decision.reasons), now)
    result = PromotionResult(decision, candidate_metrics, production_metrics, references)
    _record(settings, result, now)
    return result


def force(settings: Settings, version: str, reason: str, now: datetime | None = None) -> None:
    """Switch production to ``version`` without the gate: an operator restoring a model."""
    registry.set_production(settings.models_dir, version, f"forced: {reason}", now)
    log.warning("production forced to %s without the gate: %s", version, reason)


def decisions(models_dir: Path) -> list[dict]:
    """Every gate decision, oldest first (``decided_at`` in ISO 8601)."""
    path = models_dir / DECISIONS_FILE
    return read_records(path) if path.exists() else _legacy_decisions(models_dir)[1]


def _record(settings: Settings, result: PromotionResult, now: datetime | None) -> None:
    """Log the decision and append it to the decisions history next to the registry."""
    decision = result.decision
    payload = decision.to_dict() | {
        "decided_at": (now or datetime.now(UTC)).astimezone(UTC).isoformat(),
        "candidate_metrics": result.candidate_metrics,
        "production_metrics": result.production_metrics,
        "references": result.references,
    }
    append_record(settings.models_dir / DECISIONS_FILE, payload)
    log.info("promotion of %s: %s (%s)", decision.candidate,
             "promoted" if decision.promote else "refused", "; ".join(decision.reasons))  # fmt: skip


def _carry_over_legacy(models_dir: Path) -> None:
    """Start ``decisions.jsonl`` from the old per-decision files, once; then remove them."""
    if (models_dir / DECISIONS_FILE).exists():
        return
    files, records = _legacy_decisions(models_dir)
    if files and start_from(models_dir / DECISIONS_FILE, records):
        for file in files:
            file.unlink()
        if not any((models_dir / LEGACY_DECISIONS_DIR).iterdir()):
            (models_dir / LEGACY_DECISIONS_DIR).rmdir()


def _legacy_decisions(models_dir: Path) -> tuple[list[Path], list[dict]]:
    """The old per-decision files, oldest first (their names start with the time), and their
    records with ``decided_at`` in ISO 8601; RegistryError naming an unreadable one."""
    files = sorted((models_dir / LEGACY_DECISIONS_DIR).glob("*.json"))
    records = []
    for file in files:
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
            stamp = datetime.strptime(record["decided_at"], LEGACY_STAMP).replace(tzinfo=UTC)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise registry.RegistryError(
                f"cannot read the promotion decision {file} ({exc}): fix it or move it aside"
            ) from exc
        records.append(record | {"decided_at": stamp.isoformat()})
    return files, records
