"""``churn monitor``: drift, the estimated and realized performance, outreach's uplift,
online/offline skew, and retraining when the evidence says so."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer

from churn.cli.options import BatchDate, as_day
from churn.cli.startup import console, load_settings, online_settings, user_errors
from churn.progress import StageLog
from churn.stages import STAGES, Check, StageInputs
from core.settings import Settings
from monitor.jobs import job_run

monitor_app = typer.Typer(
    help="Drift, realized performance, online/offline skew, retraining.", no_args_is_help=True
)


def _check(name: str, inputs: StageInputs) -> Check:
    """Run a monitoring stage as its command: its job's run recorded, its figures pushed
    (by the stage), the errors a user can fix as one line."""
    stage, settings = STAGES[name], inputs.settings
    with user_errors(), job_run(settings, stage.name):
        return stage.run(inputs)


def _now(settings: Settings, as_of: date | None = None, **more: Any) -> StageInputs:
    return StageInputs(settings, datetime.now(UTC), as_of=as_of, **more)


@monitor_app.command("drift")
def monitor_drift(as_of: BatchDate = None) -> None:
    """PSI of each feature and of the score, batch against the model's training reference.

    Exit code: 0 ok, 10 warn, 20 alert (1: an error).
    """
    from monitor.drift import print_drift

    check = _check("drift", _now(load_settings(), as_day(as_of)))
    print_drift(check.report, console)
    console.print(f"report: {check.path} (chart: {check.chart})")
    raise typer.Exit(check.exit_code)


@monitor_app.command("estimate")
def monitor_estimate(as_of: BatchDate = None) -> None:
    """Expected churn rate, precision@K, PR-AUC (skill) and ROC-AUC of a batch from its
    calibrated probabilities, before any label; beside the realized figures once they exist.

    Exit code: 0 ok, 10 estimated skill under the floor, 20 under it for
    CHURN_ESTIMATE_ALERT_NIGHTS nights (1: an error).
    """
    from monitor.estimate import print_estimate

    log = StageLog(console)
    with log.stage(STAGES["estimate"].title):
        check = _check("estimate", _now(load_settings(), as_day(as_of)))
    report = check.report
    log.note(f"{report.expected.rows:,} users, {report.expected.draws} draws → {check.path}")
    print_estimate(report, check.checked, console)
    console.print(f"chart: {check.chart}")
    raise typer.Exit(check.exit_code)


@monitor_app.command("outcomes")
def monitor_outcomes() -> None:
    """Realized PR-AUC, ROC-AUC, precision@K and calibration of every batch whose horizon
    has passed; the history is kept and the newest exported."""
    from monitor.outcomes import print_outcomes

    check = _check("outcomes", _now(load_settings()))
    print_outcomes(check.report, console)
    console.print(f"history: {check.path}")


@monitor_app.command("uplift")
def monitor_uplift() -> None:
    """Did outreach keep anyone? Churn of the contacted arm against the holdout, per risk band,
    for every night's list whose horizon has passed; revenue kept and contacts it took."""
    from monitor.uplift import print_uplift

    check = _check("uplift", _now(load_settings()))
    print_uplift(check.report, console)
    if check.path is not None:
        console.print(f"report: {check.path} (chart: {check.chart})")
    console.print(f"history: {check.report.history_path}")


@monitor_app.command("skew")
def monitor_skew(
    sample: Annotated[
        int | None, typer.Option(min=1, help="Users to compare (default CHURN_SKEW_SAMPLE).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed (default CHURN_SEED).")] = None,
) -> None:
    """What the API reads from Redis (its own read path and decoder) against the offline newest
    rows of sampled users.

    Exit code 3 when any cell differs or a sampled user is missing online.
    """
    from monitor.skew import print_skew

    check = _check("skew", _now(online_settings(), sample=sample, seed=seed))
    print_skew(check.report, console)
    console.print(f"report: {check.path}")
    raise typer.Exit(check.exit_code)


@monitor_app.command("retrain-if-needed")
def monitor_retrain() -> None:
    """Retrain when drift alerts, realized PR-AUC falls below the floor or the model is old;
    the candidate goes through the same gate as `churn promote`."""
    from monitor.retrain import retrain_if_needed

    settings = load_settings()
    stage = STAGES["retrain"]
    log = StageLog(console)
    with user_errors(), job_run(settings, stage.name), log.stage(stage.title):
        decision = retrain_if_needed(settings)
    if not decision.triggers:
        log.note(f"no trigger fired; production stays {decision.production_before}")
        return
    log.note("; ".join(decision.triggers))
    verdict = "promoted" if decision.promoted else "refused by the gate"
    console.print(f"candidate {decision.candidate}: {verdict}")
    for reason in decision.gate_reasons:
        console.print(f"  {reason}")
    console.print(f"production: {decision.production_after}")
