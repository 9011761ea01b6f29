"""``churn monitor``: drift, the estimated and realized performance, outreach's uplift,
online/offline skew, and retraining when the evidence says so."""

from __future__ import annotations

from typing import Annotated

import typer

from churn.cli.options import BatchDate, as_day
from churn.cli.startup import console, load_settings, online_settings, user_errors
from churn.progress import StageLog
from churn.stages import STAGES
from monitor.exit_codes import SKEW
from monitor.jobs import job_run

monitor_app = typer.Typer(
    help="Drift, realized performance, online/offline skew, retraining.", no_args_is_help=True
)


@monitor_app.command("drift")
def monitor_drift(as_of: BatchDate = None) -> None:
    """PSI of each feature and of the score, batch against the model's training reference.

    Exit code: 0 ok, 10 warn, 20 alert (1: an error).
    """
    from core.push import push
    from monitor.drift import (
        EXIT_CODES,
        drift_report,
        drift_samples,
        print_drift,
        write_drift_report,
    )

    settings = load_settings()
    stage = STAGES["drift"]
    with user_errors(), job_run(settings, stage.name):
        report = drift_report(settings, as_day(as_of))
        path = write_drift_report(report, settings)
        push(settings, stage.job, drift_samples(report))
    print_drift(report, console)
    console.print(f"report: {path} (chart: {path.with_suffix('.png')})")
    raise typer.Exit(EXIT_CODES[report.status])


@monitor_app.command("estimate")
def monitor_estimate(as_of: BatchDate = None) -> None:
    """Expected churn rate, precision@K, PR-AUC (skill) and ROC-AUC of a batch from its
    calibrated probabilities, before any label; beside the realized figures once they exist.

    Exit code: 0 ok, 10 estimated skill under the floor, 20 under it for
    CHURN_ESTIMATE_ALERT_NIGHTS nights (1: an error).
    """
    from core.push import push
    from monitor.estimate import (
        EXIT_CODES,
        check_against_realized,
        estimate_report,
        estimate_samples,
        print_estimate,
        write_estimate_report,
    )

    settings = load_settings()
    stage = STAGES["estimate"]
    log = StageLog(console)
    with user_errors(), job_run(settings, stage.name), log.stage(stage.title):
        report = estimate_report(settings, as_day(as_of))
        path = write_estimate_report(report, settings)
        checked = check_against_realized(settings)
        push(settings, stage.job, estimate_samples(report, checked))
    log.note(f"{report.expected.rows:,} users, {report.expected.draws} draws → {path}")
    print_estimate(report, checked, console)
    console.print(f"chart: {path.with_suffix('.png')}")
    raise typer.Exit(EXIT_CODES[report.status])


@monitor_app.command("outcomes")
def monitor_outcomes() -> None:
    """Realized PR-AUC, ROC-AUC, precision@K and calibration of every batch whose horizon
    has passed; the history is kept and the newest exported."""
    from core.push import push
    from monitor.outcomes import outcome_samples, print_outcomes, realized_outcomes

    settings = load_settings()
    stage = STAGES["outcomes"]
    with user_errors(), job_run(settings, stage.name):
        report = realized_outcomes(settings)
        push(settings, stage.job, outcome_samples(report))
    print_outcomes(report, console)
    console.print(f"history: {report.history_path}")


@monitor_app.command("uplift")
def monitor_uplift() -> None:
    """Did outreach keep anyone? Churn of the contacted arm against the holdout, per risk band,
    for every night's list whose horizon has passed; revenue kept and contacts it took."""
    from core.push import push
    from monitor.uplift import print_uplift, realized_uplift, uplift_samples, write_uplift_report

    settings = load_settings()
    stage = STAGES["uplift"]
    with user_errors(), job_run(settings, stage.name):
        report = realized_uplift(settings)
        path = write_uplift_report(report, settings)
        push(settings, stage.job, uplift_samples(report))
    print_uplift(report, console)
    if path is not None:
        console.print(f"report: {path} (chart: {path.with_suffix('.png')})")
    console.print(f"history: {report.history_path}")


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
    from core.push import push
    from monitor.skew import print_skew, skew_report, skew_samples, write_skew_report

    settings = online_settings()
    stage = STAGES["skew"]
    with user_errors(), job_run(settings, stage.name):
        report = skew_report(settings, sample, seed)
        path = write_skew_report(report, settings)
        push(settings, stage.job, skew_samples(report))
    print_skew(report, console)
    console.print(f"report: {path}")
    if report.cells_mismatched or report.users_missing_online:
        raise typer.Exit(SKEW["mismatch"])


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
