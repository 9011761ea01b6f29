"""``churn monitor retrain-if-needed``: the loop that renews the model without a person.

Three triggers, each in settings: drift at alert level on the newest batch, realized
PR-AUC skill, (PR-AUC - base rate) / (1 - base rate), below ``realized_pr_auc_skill_floor``
on the newest date whose horizon has passed, and a production model older than
``max_model_age_days``. Skill, not lift (PR-AUC / base rate), as in the promotion gate: lift
cannot exceed 1 / base rate, so at a high churn rate a lift floor would fire every night.
When any fires, a candidate is trained on the newest data and handed to the same gate as
``churn promote``: the loop never promotes past it. Every decision, retrain or not, is
logged and kept in ``monitoring/retrain/history.jsonl``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from churn.atomic import write_text
from churn.settings import Settings
from training import registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evidence:
    """What the loop looked at: each part None when there was nothing to look at."""

    drift_status: str | None = None  # ok | warn | alert, of the newest batch
    drift_as_of: str | None = None
    drifted_features: list[str] = field(default_factory=list)
    realized_skill: float | None = None  # PR-AUC skill, newest evaluated batch date
    realized_as_of: str | None = None
    model_age_days: float | None = None


@dataclass
class RetrainDecision:
    decided_at: str
    production_before: str | None
    evidence: Evidence
    triggers: list[str]
    candidate: str | None = None
    promoted: bool = False
    gate_reasons: list[str] = field(default_factory=list)
    production_after: str | None = None


def triggers(evidence: Evidence, settings: Settings) -> list[str]:
    """Why to retrain, in words (empty: no reason to)."""
    out = []
    if evidence.drift_status == "alert":
        features = ", ".join(evidence.drifted_features[:5])
        out.append(f"drift alert on the batch of {evidence.drift_as_of} ({features})")
    floor = settings.realized_pr_auc_skill_floor
    if evidence.realized_skill is not None and evidence.realized_skill < floor:
        out.append(
            f"realized PR-AUC skill {evidence.realized_skill:.2f} < {floor:.2f} "
            f"on the batch of {evidence.realized_as_of}"
        )
    if (
        evidence.model_age_days is not None
        and evidence.model_age_days > settings.max_model_age_days
    ):
        out.append(
            f"production model is {evidence.model_age_days:.0f} days old "
            f"(> {settings.max_model_age_days})"
        )
    return out


def gather_evidence(settings: Settings, production: str, now: datetime) -> Evidence:
    """Drift of the newest batch, realized performance of the newest evaluated date, age."""
    from monitor.drift import drift_report
    from monitor.outcomes import realized_outcomes

    created = registry.load_metadata(settings.models_dir, production).get("created_at")
    age = (now - datetime.fromisoformat(created)).total_seconds() / 86400 if created else None
    evidence = Evidence(model_age_days=age)
    try:
        drift = drift_report(settings)
    except FileNotFoundError as exc:
        log.info("no drift evidence: %s", exc)
    else:
        drifted = [name for name in drift.features if drift.level(name) == "alert"]
        if drift.score_status == "alert":
            drifted.append("the score")
        evidence = _with(evidence, drift_status=drift.status, drift_as_of=str(drift.as_of),
                         drifted_features=drifted)  # fmt: skip
    try:
        outcomes = realized_outcomes(settings)
    except FileNotFoundError as exc:
        log.info("no realized outcomes: %s", exc)
    else:
        latest = outcomes.latest
        if latest is not None:
            evidence = _with(evidence, realized_skill=latest.pr_auc_skill,
                             realized_as_of=str(latest.as_of))  # fmt: skip
    return evidence


def retrain_if_needed(settings: Settings, now: datetime | None = None) -> RetrainDecision:
    """Look at the evidence; retrain and gate a candidate when a trigger fires; record it."""
    from training.promote import promote
    from training.train import train_models

    now = now or datetime.now(UTC)
    production = registry.production(settings.models_dir)
    if production is None:
        raise registry.RegistryError(
            "no production model to watch: run `churn train` and `churn promote` first"
        )
    evidence = gather_evidence(settings, production, now)
    decision = RetrainDecision(
        decided_at=now.isoformat(), production_before=production, evidence=evidence,
        triggers=triggers(evidence, settings), production_after=production,
    )  # fmt: skip
    if decision.triggers:
        log.info("retraining: %s", "; ".join(decision.triggers))
        trained = train_models(settings, now=now)
        decision.candidate = trained.versions[trained.best]
        gate = promote(settings, decision.candidate, now=now).decision
        decision.promoted, decision.gate_reasons = gate.promote, list(gate.reasons)
        decision.production_after = registry.production(settings.models_dir)
        log.info("candidate %s %s: %s", decision.candidate,
                 "promoted" if gate.promote else "refused", "; ".join(gate.reasons))  # fmt: skip
    else:
        log.info("no retraining: no trigger fired (%s)", _summary(evidence))
    record(decision, settings)
    return decision


def record(decision: RetrainDecision, settings: Settings) -> None:
    """Append the decision to the history, atomically (the file is rewritten whole)."""
    path = settings.monitoring_dir / "retrain" / "history.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    lines.append(json.dumps(asdict(decision), default=str))
    write_text("\n".join(lines) + "\n", path)


def _with(evidence: Evidence, **changes: object) -> Evidence:
    return Evidence(**(asdict(evidence) | changes))


def _summary(evidence: Evidence) -> str:
    parts = [f"drift {evidence.drift_status or 'unknown'}"]
    skill = evidence.realized_skill
    parts.append(f"realized skill {skill:.2f}" if skill is not None else "no realized outcomes yet")
    if evidence.model_age_days is not None:
        parts.append(f"model {evidence.model_age_days:.0f} days old")
    return ", ".join(parts)
