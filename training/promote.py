"""``churn promote``: run the gate on a candidate and switch the production alias if it passes.

Production is scored on the candidate's own validation rows (stored with the
candidate), so the comparison is on the same newest window. ``--version V
--force`` and ``--rollback`` restore an earlier model by an operator's decision.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from churn.atomic import write_text
from churn.settings import Settings
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from feature_repo.store import open_offline_store
from training import registry
from training.dataset import point_in_time_join
from training.labels import LABEL
from training.metrics import evaluate
from training.promotion import Decision, Gate, decide
from training.train import VALIDATION_ROWS

log = logging.getLogger(__name__)


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


def _record(settings: Settings, result: PromotionResult, now: datetime | None) -> None:
    """Log the decision and keep it next to the registry (one JSON file per decision)."""
    decision = result.decision
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    payload = decision.to_dict() | {
        "decided_at": stamp,
        "candidate_metrics": result.candidate_metrics,
        "production_metrics": result.production_metrics,
        "references": result.references,
    }
    # Decisions at the same instant (a test clock, two operators) must not overwrite each other.
    name = f"{stamp}-{decision.candidate}-{uuid.uuid4().hex[:6]}.json"
    write_text(json.dumps(payload, indent=2), settings.models_dir / "decisions" / name)
    log.info("promotion of %s: %s (%s)", decision.candidate,
             "promoted" if decision.promote else "refused", "; ".join(decision.reasons))  # fmt: skip
