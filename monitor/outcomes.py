"""Realized performance: what the nightly batch predicted, against what the users then did.

A batch of day D (``batch.outputs``) scored users as of T = D 00:00 UTC; its
label window is [D, D + horizon), the same as training's. Once ``user_daily`` has
every day of that window, each scored user's realized label is known (churned = no
active day in the window; no rows at all counts as no activity) and the figures of
the promotion gate can be computed on what production actually faced: on the holdout
arm and the unlisted users, as outreach may have kept the contacted (``uncontacted``).
Every run recomputes every date whose horizon has passed and appends to
``monitoring/outcomes/history.jsonl`` (``core.history``) what changed: a date's figures
when they are new or differ, a skip marker when a date has no figures (one realized class).
The newest line of a date is its record. A ``history.json`` list written before this
format is read as it is, and carried over to ``history.jsonl`` on the first write.

Each evaluated date also gets its calibration check (``monitor.calibration``): the expected
calibration error over equal-mass bins (``calibration_error``, ``calibration_bins``) and a
reliability plot, ``monitoring/outcomes/reliability/as_of=D.png``; the newest date's error
is pushed beside ``CHURN_CALIBRATION_ERROR_ALERT``, since the performance estimate is only
right while the probabilities are calibrated. And its calibration in the large
(``monitor.calibration.calibration_level``: churners against the sum of the risks), which an
absolute ECE misses at a low base rate: ``expected_rate``, ``calibration_level_z``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from batch.outputs import batch_dates, read_predictions
from core import partitions
from core.history import append_record, read_records, start_from
from core.push import Sample
from core.settings import Settings
from core.sql_engine import connect, quote_path
from core.tables import MissingInputError
from core.timeline import horizon_last_day, start_of
from feature_repo.spec import ENTITY_KEY
from monitor.calibration import (
    Level,
    calibration_error,
    calibration_level,
    equal_mass_bins,
    reliability_png,
)
from served.arms import CONTACT, read_assignments
from training.evaluation import evaluate, pr_auc_skill, reliability_curve
from training.labels import labels_at_sql

CALIBRATION_BINS = 10
RELIABILITY_DIR = "reliability"  # one PNG per evaluated date, beside the history
LEGACY_HISTORY_FILE = "history.json"  # one JSON list, rewritten whole: read, then carried over


@dataclass(frozen=True)
class DateOutcome:
    """Realized metrics of one batch date (the scores as predicted then, the labels since)."""

    as_of: date
    model_version: str
    horizon_days: int
    rows: int
    positives: int
    base_rate: float
    pr_auc: float
    pr_auc_lift: float  # information only: capped at 1 / base_rate
    pr_auc_skill: float  # what the retraining trigger and the alert compare to their floor
    roc_auc: float
    precision_at_k: float
    k: int
    brier: float
    # Equal-width bins of predicted risk: bin_low, bin_high, mean_predicted, observed_rate, count.
    calibration: list[dict] = field(default_factory=list)
    # Users of the contact arm, left out: outreach may have kept them (served.arms).
    contacted_left_out: int = 0
    # ECE over equal-mass bins (monitor.calibration), and those bins (same columns as above).
    calibration_error: float = 0.0
    calibration_bins: list[dict] = field(default_factory=list)
    # Calibration in the large: the mean predicted risk, and the churners' distance from it
    # in label-noise deviations (monitor.calibration.Level).
    expected_rate: float = 0.0
    calibration_level_z: float = 0.0

    @property
    def level(self) -> Level:
        return Level(self.expected_rate, self.base_rate, self.calibration_level_z)

    def record(self) -> dict:
        return asdict(self) | {"as_of": self.as_of.isoformat()}


@dataclass(frozen=True)
class PendingDate:
    """A batch date whose horizon is not over: ``user_daily`` must reach ``complete_on``."""

    as_of: date
    complete_on: date


@dataclass(frozen=True)
class SkippedDate:
    """A batch date whose horizon passed but whose metrics are undefined (one class only)."""

    as_of: date
    reason: str


@dataclass(frozen=True)
class OutcomesReport:
    evaluated: list[DateOutcome]  # oldest first
    pending: list[PendingDate]
    skipped: list[SkippedDate]
    last_complete_day: date | None  # newest day of user_daily
    history_path: Path
    calibration_alert: float  # CHURN_CALIBRATION_ERROR_ALERT of the run

    def miscalibrated(self, outcome: DateOutcome) -> bool:
        """Whether ``outcome``'s calibration error is above the run's threshold."""
        return outcome.calibration_error > self.calibration_alert

    @property
    def latest(self) -> DateOutcome | None:
        """The newest evaluated batch date: what the retraining loop and the alerts look at."""
        return self.evaluated[-1] if self.evaluated else None


def daily_files_sql(daily_glob: str) -> str:
    """The ``user_daily`` files as a relation, each row's ``date`` from its partition."""
    return f"read_parquet({quote_path(daily_glob)}, hive_partitioning = true)"


def realized_labels_sql(scored: str, daily_glob: str, as_of: date, horizon_days: int) -> str:
    """Each scored user's realized label at T = ``as_of``, over the ``user_daily`` files.

    ``scored`` is a relation with ``user_id`` (its other columns are kept); ``daily_glob``
    the ``user_daily`` files. The label is training's (``training.labels.labels_at_sql``):
    churned = no active day in [as_of, as_of + horizon_days), no rows counting as none.
    """
    return labels_at_sql(scored, as_of, horizon_days, daily=daily_files_sql(daily_glob))


def outcome_of(
    labelled: pd.DataFrame,
    as_of: date,
    model_version: str,
    settings: Settings,
    contacted_left_out: int = 0,
) -> DateOutcome:
    """Metrics of one date's scores against its realized labels (``training.evaluation.evaluate``)."""
    y, risk = labelled["churned"].to_numpy(), labelled["churn_risk"].to_numpy()
    metrics = evaluate(y, risk, k=settings.top_k)
    calibration = reliability_curve(y, risk, bins=CALIBRATION_BINS)
    mass_bins = equal_mass_bins(y, risk, bins=CALIBRATION_BINS)
    level = calibration_level(y, risk)
    return DateOutcome(
        as_of=as_of,
        model_version=model_version,
        horizon_days=settings.horizon_days,
        rows=int(_figure(metrics, "rows")),
        positives=int(_figure(metrics, "positives")),
        base_rate=_figure(metrics, "base_rate"),
        pr_auc=_figure(metrics, "pr_auc"),
        pr_auc_lift=_figure(metrics, "pr_auc_lift"),
        pr_auc_skill=_figure(metrics, "pr_auc_skill"),
        roc_auc=_figure(metrics, "roc_auc"),
        precision_at_k=_figure(metrics, "precision_at_k"),
        k=int(_figure(metrics, "k")),
        brier=_figure(metrics, "brier"),
        calibration=_bin_records(calibration),
        contacted_left_out=contacted_left_out,
        calibration_error=calibration_error(mass_bins),
        calibration_bins=_bin_records(mass_bins),
        expected_rate=level.expected,
        calibration_level_z=level.z,
    )


def _bin_records(table: pd.DataFrame) -> list[dict]:
    """A bin table as JSON-ready records: counts as int, the rest as float."""
    return [
        {key: (int(v) if key == "count" else float(v)) for key, v in row.items()}
        for row in table.to_dict(orient="records")
    ]


def realized_outcomes(settings: Settings) -> OutcomesReport:
    """Evaluate every batch date whose horizon has passed; append what changed to the history.

    Every date is computed before anything is written, so a bad predictions file or
    history file raises (naming it) and leaves the history as it was. A re-run on the
    same inputs appends nothing.
    """
    days = batch_dates(settings.predictions_dir)
    if not days:
        raise FileNotFoundError(
            f"no batch predictions under {settings.predictions_dir} (as_of=YYYY-MM-DD/): "
            "run `churn batch score` first"
        )
    path = settings.outcomes_history_path
    lines = history_lines(path)
    daily_days = partitions.partition_days(settings.user_daily_path)
    if not daily_days:
        raise MissingInputError(
            f"{settings.user_daily_path} has no days: run `churn data prepare` first"
        )
    last_complete = daily_days[-1]
    evaluated, pending, skipped = [], [], []
    con = connect(settings)
    daily_glob = partitions.table_glob(settings.user_daily_path)
    for day in days:
        complete_on = horizon_last_day(day, settings.horizon_days)
        if last_complete < complete_on:
            pending.append(PendingDate(day, complete_on))
            continue
        frame, left_out = uncontacted(read_predictions(settings.predictions_dir, day),
                                      read_assignments(settings, day))  # fmt: skip
        con.register("scored", frame)
        labelled = con.execute(
            realized_labels_sql("scored", daily_glob, day, settings.horizon_days)
        ).df()
        con.unregister("scored")
        version = ",".join(sorted(frame["model_version"].astype(str).unique()))
        try:
            evaluated.append(outcome_of(labelled, day, version, settings, left_out))
        except ValueError as exc:  # a single realized class: both AUCs undefined
            skipped.append(SkippedDate(day, str(exc)))
    changed = [o.record() for o in evaluated]
    changed += [{"as_of": s.as_of.isoformat(), "skipped": s.reason} for s in skipped]
    _carry_over_legacy(path)
    new = [r for r in changed if _text(lines.get(r["as_of"])) != _text(r)]
    for record in new:
        append_record(path, record)
    report = OutcomesReport(evaluated, pending, skipped, last_complete, path,
                            settings.calibration_error_alert)  # fmt: skip
    redrawn = {r["as_of"] for r in new}
    for outcome in evaluated:  # a plot per date whose figures changed, or that has none yet
        png = reliability_path(settings, outcome.as_of)
        if outcome.as_of.isoformat() in redrawn or not png.exists():
            write_reliability(outcome, report.calibration_alert, png)
    return report


def _figure(metrics: Mapping[str, float | int | None], name: str) -> float:
    """One of ``evaluate``'s figures, each defined for probabilities of both classes."""
    value = metrics[name]
    if value is None:
        raise ValueError(f"evaluate gave no {name} for probabilities of both classes")
    return float(value)


def reliability_path(settings: Settings, as_of: date) -> Path:
    """The reliability plot of batch date ``as_of``, beside the outcomes history."""
    return settings.outcomes_dir / RELIABILITY_DIR / f"as_of={as_of.isoformat()}.png"


def write_reliability(outcome: DateOutcome, threshold: float, path: Path) -> Path:
    """Draw ``outcome``'s equal-mass bins (``monitor.calibration.reliability_png``)."""
    title = f"Calibration of {outcome.as_of} ({outcome.model_version}, {outcome.rows} users)"
    table = pd.DataFrame(outcome.calibration_bins)
    return reliability_png(table, outcome.calibration_error, threshold, path, title)


def uncontacted(scored: pd.DataFrame, assigned: pd.DataFrame | None) -> tuple[pd.DataFrame, int]:
    """The scored users outreach did not touch (holdout and unlisted), and how many it did.

    A contacted user who stayed may have stayed because of the call: counted, they would
    make the model look wrong exactly when outreach works. The holdout arm is a random
    share of the list, so the list's users are still measured, through it.
    """
    if assigned is None:  # a night before the holdout experiment: nobody on record
        return scored, 0
    contacted = assigned.loc[assigned["arm"] == CONTACT, ENTITY_KEY]
    touched = scored[ENTITY_KEY].isin(contacted)
    return scored.loc[~touched].reset_index(drop=True), int(touched.sum())


def read_history(path: Path) -> dict[str, dict]:
    """The figures of each evaluated batch date, by date, oldest first.

    Dates whose newest line is a skip marker are left out. ValueError naming the file
    when it cannot be read, so a broken history is never written over.
    """
    return {day: r for day, r in history_lines(path).items() if "skipped" not in r}


def history_lines(path: Path) -> dict[str, dict]:
    """The newest line of each batch date (figures, or ``{as_of, skipped}``), oldest date first.

    Reads ``path`` or, before the first write in this format, its ``history.json``
    sibling. Records written before ``pr_auc_skill`` existed get it from their PR-AUC
    and base rate.
    """
    legacy = path.with_name(LEGACY_HISTORY_FILE)
    source = path if path.exists() or not legacy.exists() else legacy
    try:
        records = read_records(path) if source == path else _read_legacy(legacy)
        newest = {str(r["as_of"]): r for r in records}
        return {day: _upgraded(newest[day]) for day in sorted(newest)}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{source} is not an outcomes history ({exc}): move it aside") from exc


def _read_legacy(path: Path) -> list[dict]:
    records = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(records, list):
        raise ValueError("expected a list of records")
    return records


def _carry_over_legacy(path: Path) -> None:
    """Start ``path`` from a ``history.json`` list (then removed), once, before the first append."""
    legacy = path.with_name(LEGACY_HISTORY_FILE)
    if path.exists() or not legacy.exists():
        return
    records = [with_skill(r) for r in _read_legacy(legacy)]
    if start_from(path, sorted(records, key=lambda r: str(r["as_of"]))):
        legacy.unlink()


def _upgraded(record: dict) -> dict:
    return record if "skipped" in record else with_skill(record)


def _text(record: dict | None) -> str:
    """A record as JSON text: equal figures compare equal (NaN included)."""
    return json.dumps(record, sort_keys=True)


def with_skill(record: dict) -> dict:
    """``record`` with ``pr_auc_skill``, computed when an older record lacks it."""
    if "pr_auc_skill" in record:
        return record
    return record | {"pr_auc_skill": pr_auc_skill(record["pr_auc"], record["base_rate"])}


def print_outcomes(report: OutcomesReport, console: Console) -> None:
    """One row per evaluated batch date, the newest date's calibration, and what is pending."""
    table = Table(
        "as of", "model", "rows", "base rate", "expected", "PR-AUC", "skill", "lift", "ROC-AUC",
        "P@K", "Brier", "ECE",
        title=f"Realized performance (user_daily up to {report.last_complete_day})",
    )  # fmt: skip
    for o in report.evaluated:
        ece = f"{o.calibration_error:.3f}"
        table.add_row(
            str(o.as_of), o.model_version, str(o.rows), f"{o.base_rate:.3f}",
            f"[red]{o.expected_rate:.3f}[/red]" if o.level.off else f"{o.expected_rate:.3f}",
            f"{o.pr_auc:.3f}",
            f"{o.pr_auc_skill:.3f}", f"{o.pr_auc_lift:.2f}", f"{o.roc_auc:.3f}",
            f"{o.precision_at_k:.3f} (K={o.k})", f"{o.brier:.4f}",
            f"[red]{ece} > {report.calibration_alert:g}[/red]" if report.miscalibrated(o) else ece,
        )  # fmt: skip
    if report.evaluated:
        console.print(table)
    else:
        console.print("No batch date has a complete horizon yet.")
    latest = report.latest
    if latest is not None:
        calibration = Table(
            "predicted risk", "mean predicted", "realized rate", "users",
            title=f"Calibration of {latest.as_of}: ECE {latest.calibration_error:.3f} "
            "(equal-mass bins)",
        )  # fmt: skip
        for row in latest.calibration_bins:
            calibration.add_row(
                f"[{row['bin_low']:.3f}, {row['bin_high']:.3f}]",
                f"{row['mean_predicted']:.3f}",
                f"{row['observed_rate']:.3f}", str(row["count"]),
            )  # fmt: skip
        console.print(calibration)
    for o in report.evaluated:
        if report.miscalibrated(o):
            console.print(
                f"[red]{o.as_of}: calibration error {o.calibration_error:.3f} exceeds "
                f"CHURN_CALIBRATION_ERROR_ALERT {report.calibration_alert:g}[/red]: the "
                "predicted risks no longer match what users do, so the performance estimate "
                "(read off those risks) is off too; retrain on recent labels"
            )
        if o.level.off:
            console.print(
                f"[red]{o.as_of}: {o.base_rate:.3f} churned against {o.expected_rate:.3f} "
                f"expected[/red] ({o.level.ratio:.2f}x, {o.calibration_level_z:+.1f} standard "
                "deviations of label noise): the model's level no longer holds, so every risk "
                "and every estimated figure is off by about that factor; retrain on recent labels"
            )
    for s in report.skipped:
        console.print(f"[yellow]{s.as_of}: not evaluated[/yellow] ({s.reason})")
    for p in report.pending:
        console.print(f"[dim]pending {p.as_of}: needs user_daily up to {p.complete_on}[/dim]")


def outcome_samples(report: OutcomesReport) -> list[Sample]:
    """Gauges of the newest evaluated batch date (none before any horizon has passed).

    ``churn_outcomes_calibration_error`` (labelled by model version) and its threshold
    ``churn_outcomes_calibration_error_threshold`` (no labels: a setting, not a model's)
    feed the ChurnModelMiscalibrated alert; ``churn_outcomes_churn_rate_ratio`` and
    ``churn_outcomes_calibration_level_off`` (the verdict, ``Level.off``) ChurnRateOffTheModel.
    """
    o = report.latest
    if o is None:
        return []
    labels = {"model_version": o.model_version}
    as_of = start_of(o.as_of).timestamp()
    values = [
        ("churn_realized_pr_auc", o.pr_auc, "Realized PR-AUC of the newest evaluated batch"),
        ("churn_realized_pr_auc_skill", o.pr_auc_skill, "Realized (PR-AUC - base) / (1 - base)"),
        ("churn_realized_pr_auc_lift", o.pr_auc_lift, "Realized PR-AUC over its base rate"),
        ("churn_realized_roc_auc", o.roc_auc, "Realized ROC-AUC of the newest evaluated batch"),
        ("churn_realized_precision_at_k", o.precision_at_k, "Realized precision among the top K"),
        ("churn_realized_base_rate", o.base_rate, "Share of scored users who churned"),
        ("churn_realized_brier", o.brier, "Brier score of the predicted risks"),
        ("churn_realized_as_of_timestamp_seconds", as_of, "Batch date (T) these figures are of"),
    ]
    samples = [Sample(name, float(value), text, labels) for name, value, text in values]
    return [
        *samples,
        Sample("churn_outcomes_calibration_error", o.calibration_error,
               "Expected calibration error (10 equal-mass bins) of the newest evaluated batch",
               labels),
        Sample("churn_outcomes_calibration_error_threshold", report.calibration_alert,
               "CHURN_CALIBRATION_ERROR_ALERT: a calibration error above it is an alert"),
        Sample("churn_outcomes_churn_rate_ratio", o.level.ratio,
               "Realized churn rate over the mean predicted risk, newest evaluated batch", labels),
        Sample("churn_outcomes_calibration_level_off", float(o.level.off),
               "1 when that rate is far outside the label noise and off by a quarter either way",
               labels),
    ]  # fmt: skip
