"""``churn monitor retrain-if-needed``: the loop that renews the model without a person.

Three triggers, each in settings (and a fourth, off by default: the estimate, below): drift
at alert level on the newest batch, realized
PR-AUC skill, (PR-AUC - base rate) / (1 - base rate), below ``realized_pr_auc_skill_floor``
on the newest date whose horizon has passed, and a production model older than
``max_model_age_days``. Skill, not lift (PR-AUC / base rate), as in the promotion gate: lift
cannot exceed 1 / base rate, so at a high churn rate a lift floor would fire every night.
When any fires, a candidate is trained on the newest data and handed to the same gate as
``churn promote``: the loop never promotes past it. Every decision, retrain or not, is
logged and appended to ``monitoring/retrain/history.jsonl`` (``core.history``).

The loop decides on what the night's monitoring jobs recorded (``churn monitor drift`` and
``churn monitor outcomes`` run before it, see ``churn.nightly``): it reads their histories
and never recomputes or rewrites them. With ``retrain_on_estimate``, the estimate's history
(``churn monitor estimate``) is evidence too: estimated PR-AUC skill under the realized floor
for ``estimate_alert_nights`` nights in a row fires before any label could confirm it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

from batch.outputs import batch_dates
from core import partitions
from core.history import append_record
from core.settings import Settings
from core.timeline import horizon_complete
from monitor.drift import drift_history
from monitor.estimate import estimate_history, nights_under_floor
from monitor.outcomes import history_lines
from served import registry
from served.card import load_card

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
    # Estimated PR-AUC skill of the newest batch, and nights in a row under the floor
    # (only with CHURN_RETRAIN_ON_ESTIMATE).
    estimated_skill: float | None = None
    estimated_as_of: str | None = None
    estimate_nights_under_floor: int | None = None
    # Evidence the loop expected and did not find, each with the command that records it.
    notes: list[str] = field(default_factory=list)


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
    nights = evidence.estimate_nights_under_floor
    if (
        settings.retrain_on_estimate
        and nights is not None
        and nights >= settings.estimate_alert_nights
    ):
        out.append(
            f"estimated PR-AUC skill {evidence.estimated_skill:.2f} < {floor:.2f} for {nights} "
            f"nights in a row, up to the batch of {evidence.estimated_as_of}"
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
    """Drift of the newest batch and realized skill of the newest evaluated date, as the
    monitoring histories recorded them, and the production model's age.

    Nothing is recomputed and nothing is written. A history that has no line for the
    date it should cover is evidence of nothing: that part stays None (no trigger fires
    on it) and ``notes`` says what is missing and which command records it:

    - drift counts only when the drift history has a line for the newest batch date
      (a line of an older batch is not tonight's drift);
    - realized skill counts only when the outcomes history has a line (figures or a
      skip) for the newest batch date whose horizon ``user_daily`` completes; the skill
      is then that of the newest such date with figures, as ``churn monitor outcomes``
      reports it. Before any batch date's horizon is complete nothing is missing: no note.

    A batch re-scored after its drift or outcomes run is not noticed: the nightly chain
    runs those right after the batch, and stops when one of them fails.
    """
    age = (now - load_card(settings.models_dir, production).created_at).total_seconds() / 86400
    days = batch_dates(settings.predictions_dir)
    drift, drift_note = _drift_evidence(settings, days)
    realized, realized_note = _realized_evidence(settings, days)
    estimated, estimate_note = _estimate_evidence(settings, days)
    notes = [note for note in (drift_note, realized_note, estimate_note) if note]
    for note in notes:
        log.warning("%s", note)
    return Evidence(model_age_days=age, notes=notes, **drift, **realized, **estimated)


def _drift_evidence(settings: Settings, days: list[date]) -> tuple[dict, str | None]:
    """``Evidence`` fields from the drift history's line of the newest batch, or a note."""
    if not days:
        return {}, f"no batch in {settings.predictions_dir}: no drift to look at"
    newest = days[-1].isoformat()
    lines = {line["as_of"]: line for line in drift_history(settings)}
    line = lines.get(newest)
    if line is None:
        recorded = max(lines, default="none")
        return {}, (
            f"no drift record for the newest batch, {newest} (newest record: {recorded}): "
            "run `churn monitor drift`"
        )
    drifted = list(line.get("alert_features", []))
    if line.get("score_status") == "alert":
        drifted.append("the score")
    return {
        "drift_status": line["status"],
        "drift_as_of": newest,
        "drifted_features": drifted,
    }, None


def _realized_evidence(settings: Settings, days: list[date]) -> tuple[dict, str | None]:
    """``Evidence`` fields from the outcomes history's newest evaluated date, or a note."""
    daily = partitions.partition_days(settings.user_daily_path)
    complete = [
        d.isoformat()
        for d in days
        if daily and horizon_complete(d, settings.horizon_days, daily[-1])
    ]
    if not complete:
        return {}, None
    lines = history_lines(settings.outcomes_history_path)
    if complete[-1] not in lines:
        recorded = max(lines, default="none")
        return {}, (
            f"no outcomes record for the batch of {complete[-1]}, whose horizon user_daily "
            f"completes (newest record: {recorded}): run `churn monitor outcomes`"
        )
    evaluated = [lines[d] for d in complete if d in lines and "skipped" not in lines[d]]
    if not evaluated:
        return {}, None
    return {
        "realized_skill": evaluated[-1]["pr_auc_skill"],
        "realized_as_of": evaluated[-1]["as_of"],
    }, None


def _estimate_evidence(settings: Settings, days: list[date]) -> tuple[dict, str | None]:
    """``Evidence`` fields from the estimate history up to its line of the newest batch, or a
    note; nothing at all unless ``retrain_on_estimate``. The run of nights under the floor is
    counted against the floor of this run's settings."""
    if not settings.retrain_on_estimate or not days:
        return {}, None
    newest = days[-1].isoformat()
    lines = [line for line in estimate_history(settings) if line["as_of"] <= newest]
    if not lines or lines[-1]["as_of"] != newest:
        recorded = lines[-1]["as_of"] if lines else "none"
        return {}, (
            f"no estimate record for the newest batch, {newest} (newest record: {recorded}): "
            "run `churn monitor estimate`"
        )
    return {
        "estimated_skill": lines[-1]["expected"]["pr_auc_skill"]["mean"],
        "estimated_as_of": newest,
        "estimate_nights_under_floor": nights_under_floor(
            lines, settings.realized_pr_auc_skill_floor
        ),
    }, None


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
    """Append the decision to the retraining history."""
    append_record(settings.retrain_history_path, asdict(decision))


def _summary(evidence: Evidence) -> str:
    parts = [f"drift {evidence.drift_status or 'unknown'}"]
    skill = evidence.realized_skill
    parts.append(f"realized skill {skill:.2f}" if skill is not None else "no realized outcomes yet")
    if evidence.model_age_days is not None:
        parts.append(f"model {evidence.model_age_days:.0f} days old")
    return ", ".join(parts)
