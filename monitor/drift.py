"""``churn monitor drift``: PSI of a nightly batch against the model that scored it.

The batch job leaves a directory per batch date (``batch.outputs``) with
``predictions.parquet`` (the scores, and the ``model_version`` that made them) and
``features.parquet`` (the features exactly as scored). The reference is that model's own training distribution
(``reference_bins``) and validation scores (``score_reference_bins``) from its registry
metadata, not production's: after a promotion, older batches are still judged against
the model that scored them.

Outputs under ``Settings.drift_dir`` (``monitoring_dir/drift/``): ``as_of=<date>.json``
(the report), ``as_of=<date>.png`` (PSI per feature), both written atomically, and
``history.jsonl`` (``Settings.drift_history_path``, ``core.history``: one summary line
appended per run; a re-run of a date appends a newer line for it, and the newest line of a
date is the one that counts).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from batch.outputs import (
    FEATURES_FILE,
    PREDICTIONS_FILE,
    batch_dates,
    batch_dir,
    read_batch_file,
    read_predictions,
)
from core.atomic import write_json
from core.history import append_record, read_records
from core.push import Sample
from core.settings import Settings
from feature_repo.spec import ageing_features
from monitor.charts import psi_bars
from monitor.exit_codes import DRIFT
from monitor.psi import STATUSES, feature_psi, psi_status, worst
from served.card import ModelCard, load_card

SCORE_COLUMN = "churn_risk"
SCORE_LABEL = "score: churn_risk"  # the score's bar in the chart and row in the table
# `churn monitor drift` exits with these (owned by monitor.exit_codes, which the night reads).
EXIT_CODES = DRIFT
STATUS_STYLES = {"ok": "green", "warn": "yellow", "alert": "bold red"}


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's PSI against the reference and the level it reaches."""

    psi: float
    status: str  # ok | warn | alert
    kind: str  # numeric | categorical


@dataclass(frozen=True)
class DriftReport:
    """Drift of one batch; ``status`` is the worst of the features' and the score's."""

    as_of: date
    model_version: str
    rows: int
    features: dict[str, FeatureDrift]
    score_psi: float
    score_status: str
    status: str
    thresholds: dict[str, float]
    # Features that grow with time by nature (tenure): their PSI is shown, not counted in
    # ``status``. The reference is months old by the time a batch runs (labels need the
    # horizon to pass), so every user's tenure has moved on: it would alert every night.
    not_counted: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """JSON-ready: the date as ``YYYY-MM-DD``."""
        return dataclasses.asdict(self) | {"as_of": self.as_of.isoformat()}

    def level(self, name: str) -> str:
        """A feature's status as it counts towards the report's (ok when not counted)."""
        return "ok" if name in self.not_counted else self.features[name].status

    def summary(self) -> dict:
        """The history line: the verdict and which features reached which level."""
        by_psi = sorted(self.features, key=lambda name: -self.features[name].psi)
        return {
            "as_of": self.as_of.isoformat(),
            "model_version": self.model_version,
            "rows": self.rows,
            "status": self.status,
            "score_psi": self.score_psi,
            "score_status": self.score_status,
            "max_feature_psi": self.features[by_psi[0]].psi if by_psi else None,
            "alert_features": [n for n in by_psi if self.level(n) == "alert"],
            "warn_features": [n for n in by_psi if self.level(n) == "warn"],
            "not_counted": list(self.not_counted),
        }


def compare(
    card: ModelCard,
    features: pd.DataFrame,
    scores: pd.Series,
    warn: float,
    alert: float,
) -> tuple[dict[str, FeatureDrift], float]:
    """(PSI and status per reference feature, PSI of ``scores``) against ``card``'s references."""
    drift = {}
    for name, reference in _references(card, "reference_bins").items():
        value = feature_psi(reference, features[name])
        drift[name] = FeatureDrift(value, psi_status(value, warn, alert), reference["kind"])
    return drift, feature_psi(_references(card, "score_reference_bins"), scores)


def drift_report(settings: Settings, as_of: date | None = None) -> DriftReport:
    """Drift of the batch of ``as_of`` (default: the newest) against its scoring model.

    FileNotFoundError when there is no such batch, ValueError naming the file when a
    batch file is unreadable or lacks columns, RegistryError when its model is unknown.
    """
    available = batch_dates(settings.predictions_dir)
    if as_of is None:
        if not available:
            raise FileNotFoundError(
                f"no batch predictions in {settings.predictions_dir}: run `churn batch score`"
            )
        as_of = available[-1]
    elif as_of not in available:
        newest = available[-1].isoformat() if available else "none"
        raise FileNotFoundError(
            f"no batch predictions for {as_of.isoformat()} in {settings.predictions_dir} "
            f"(newest: {newest}): run `churn batch score`"
        )
    directory = batch_dir(settings.predictions_dir, as_of)
    predictions = read_predictions(settings.predictions_dir, as_of)
    versions = predictions["model_version"].dropna().unique()
    if len(versions) != 1:
        raise ValueError(
            f"{directory / PREDICTIONS_FILE} should be scored by one model, found {list(versions)}"
        )
    version = str(versions[0])
    card = load_card(settings.models_dir, version)
    features = read_batch_file(directory / FEATURES_FILE, list(_references(card, "reference_bins")))
    if len(features) != len(predictions):
        raise ValueError(
            f"{directory / FEATURES_FILE} has {len(features)} rows but "
            f"{directory / PREDICTIONS_FILE} has {len(predictions)}: the batch is inconsistent"
        )
    warn, alert, ignored = settings.psi_warn, settings.psi_alert, ignored_features(settings)
    drift, score_psi = compare(card, features, predictions[SCORE_COLUMN], warn, alert)
    score_status = psi_status(score_psi, warn, alert)
    return DriftReport(
        as_of=as_of,
        model_version=version,
        rows=len(predictions),
        features=drift,
        score_psi=score_psi,
        score_status=score_status,
        status=worst([score_status, *(f.status for n, f in drift.items() if n not in ignored)]),
        thresholds={"warn": warn, "alert": alert},
        not_counted=tuple(n for n in drift if n in ignored),
    )


def ignored_features(settings: Settings) -> tuple[str, ...]:
    """The features drift shows but does not count: ``CHURN_DRIFT_IGNORE_FEATURES``, or
    unset, those that grow with time by nature (``feature_repo.spec.ageing_features``)."""
    chosen = settings.drift_ignore_features
    return ageing_features() if chosen is None else chosen


def write_drift_report(report: DriftReport, settings: Settings) -> Path:
    """Write the report's JSON and PNG and its history line; return the JSON's path."""
    out = settings.drift_dir
    stem = f"as_of={report.as_of.isoformat()}"
    written_at = datetime.now(UTC).isoformat()
    path = write_json(report.as_dict() | {"written_at": written_at}, out / f"{stem}.json")
    values = {name: f.psi for name, f in report.features.items()} | {SCORE_LABEL: report.score_psi}
    statuses = {
        name: "not counted" if name in report.not_counted else f.status
        for name, f in report.features.items()
    }
    psi_bars(
        values,
        statuses | {SCORE_LABEL: report.score_status},
        report.thresholds["warn"],
        report.thresholds["alert"],
        out / f"{stem}.png",
        title=f"Drift of the batch of {report.as_of.isoformat()}\nmodel {report.model_version}",
    )
    append_record(settings.drift_history_path, report.summary() | {"written_at": written_at})
    return path


def drift_history(settings: Settings) -> list[dict]:
    """The newest line of each batch date, oldest date first; ``[]`` before the first report.

    HistoryError (a ValueError) naming the file and line when a line is damaged.
    """
    newest = {str(r.get("as_of")): r for r in read_records(settings.drift_history_path)}
    return [newest[day] for day in sorted(newest)]


def print_drift(report: DriftReport, console: Console) -> None:
    """Print the verdict and one row per feature and the score, worst first."""
    style = STATUS_STYLES[report.status]
    console.print(
        f"Drift of the batch of {report.as_of.isoformat()}: [{style}]{report.status}[/] "
        f"(model {report.model_version}, {report.rows} rows; "
        f"warn ≥ {report.thresholds['warn']:g}, alert ≥ {report.thresholds['alert']:g})"
    )
    rows = [(SCORE_LABEL, "score", report.score_psi, report.score_status)]
    rows += [(name, f.kind, f.psi, f.status) for name, f in report.features.items()]
    rows.sort(key=lambda row: (-STATUSES.index(row[3]), -row[2], row[0]))
    table = Table("feature", "kind", "PSI", "status")
    for name, kind, value, status in rows:
        shown = f"{status} (not counted)" if name in report.not_counted else status
        table.add_row(Text(name), kind, f"{value:.4f}", Text(shown, style=STATUS_STYLES[status]))
    console.print(table)


def drift_samples(report: DriftReport) -> list[Sample]:
    """Gauges for the Pushgateway: PSI per feature, PSI of the score, status 0/1/2."""
    samples = [
        Sample(
            "churn_feature_psi",
            f.psi,
            "PSI of a feature in the newest batch against its scoring model's training data",
            {"feature": name},
        )
        for name, f in report.features.items()
    ]
    samples.append(
        Sample(
            "churn_score_psi",
            report.score_psi,
            "PSI of churn_risk in the newest batch against the model's validation scores",
        )
    )
    samples.append(
        Sample(
            "churn_drift_status",
            float(STATUSES.index(report.status)),
            "Drift of the newest batch: 0 ok, 1 warn, 2 alert",
        )
    )
    return samples


def _references(card: ModelCard, key: Literal["reference_bins", "score_reference_bins"]) -> dict:
    references = card.reference_bins if key == "reference_bins" else card.score_reference_bins
    if not references:
        raise ValueError(
            f"model {card.version} has no {key} in its metadata: "
            "it cannot be monitored for drift; retrain it with `churn train`"
        )
    return dict(references)
