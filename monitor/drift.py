"""``churn monitor drift``: PSI of a nightly batch against the model that scored it.

The batch job leaves ``predictions_dir/as_of=YYYY-MM-DD/`` with ``predictions.parquet``
(the scores, and the ``model_version`` that made them) and ``features.parquet`` (the
features exactly as scored). The reference is that model's own training distribution
(``reference_bins``) and validation scores (``score_reference_bins``) from its registry
metadata, not production's: after a promotion, older batches are still judged against
the model that scored them.

Outputs under ``monitoring_dir/drift/``: ``as_of=<date>.json`` (the report),
``as_of=<date>.png`` (PSI per feature) and ``history.jsonl`` (one summary line per batch
date, sorted by date; a re-run replaces its date's line). Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table
from rich.text import Text

from churn.atomic import write_json, write_text
from churn.settings import Settings
from monitor.charts import psi_bars
from monitor.psi import STATUSES, feature_psi, psi_status, worst
from monitor.push import Sample
from training import registry

PREDICTIONS_FILE = "predictions.parquet"
FEATURES_FILE = "features.parquet"
HISTORY_FILE = "history.jsonl"
SCORE_COLUMN = "churn_risk"
SCORE_LABEL = "score: churn_risk"  # the score's bar in the chart and row in the table
_PARTITION = re.compile(r"^as_of=(\d{4}-\d{2}-\d{2})$")
# `churn monitor drift` exits with these, so a scheduler can tell the levels apart;
# 1 stays the exit code of an error (missing or unreadable input).
EXIT_CODES = {"ok": 0, "warn": 10, "alert": 20}
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
            "max_feature_psi": self.features[by_psi[0]].psi if by_psi else None,
            "alert_features": [n for n in by_psi if self.level(n) == "alert"],
            "warn_features": [n for n in by_psi if self.level(n) == "warn"],
            "not_counted": list(self.not_counted),
        }


def batch_dates(settings: Settings) -> list[date]:
    """Dates of the batch directories in ``predictions_dir``, oldest first.

    Only ``as_of=YYYY-MM-DD`` names count: the batch job's staging directories are hidden.
    """
    if not settings.predictions_dir.is_dir():
        return []
    found = []
    for path in settings.predictions_dir.iterdir():
        match = _PARTITION.match(path.name)
        if match and path.is_dir():
            try:
                found.append(date.fromisoformat(match.group(1)))
            except ValueError:
                continue  # as_of=2026-13-45: not a batch this job wrote
    return sorted(found)


def compare(
    metadata: dict,
    features: pd.DataFrame,
    scores: pd.Series,
    warn: float,
    alert: float,
) -> tuple[dict[str, FeatureDrift], float]:
    """(PSI and status per reference feature, PSI of ``scores``) against ``metadata``'s references."""
    drift = {}
    for name, reference in _references(metadata, "reference_bins").items():
        value = feature_psi(reference, features[name])
        drift[name] = FeatureDrift(value, psi_status(value, warn, alert), reference["kind"])
    return drift, feature_psi(_references(metadata, "score_reference_bins"), scores)


def drift_report(settings: Settings, as_of: date | None = None) -> DriftReport:
    """Drift of the batch of ``as_of`` (default: the newest) against its scoring model.

    FileNotFoundError when there is no such batch, ValueError naming the file when a
    batch file is unreadable or lacks columns, RegistryError when its model is unknown.
    """
    available = batch_dates(settings)
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
    directory = settings.predictions_dir / f"as_of={as_of.isoformat()}"
    predictions = _read_parquet(directory / PREDICTIONS_FILE, [SCORE_COLUMN, "model_version"])
    if predictions.empty:
        raise ValueError(f"{directory / PREDICTIONS_FILE} has no rows: no drift to measure")
    versions = predictions["model_version"].dropna().unique()
    if len(versions) != 1:
        raise ValueError(
            f"{directory / PREDICTIONS_FILE} should be scored by one model, found {list(versions)}"
        )
    version = str(versions[0])
    metadata = registry.load_metadata(settings.models_dir, version)
    features = _read_parquet(
        directory / FEATURES_FILE, list(_references(metadata, "reference_bins"))
    )
    if len(features) != len(predictions):
        raise ValueError(
            f"{directory / FEATURES_FILE} has {len(features)} rows but "
            f"{directory / PREDICTIONS_FILE} has {len(predictions)}: the batch is inconsistent"
        )
    warn, alert, ignored = settings.psi_warn, settings.psi_alert, settings.drift_ignore_features
    drift, score_psi = compare(metadata, features, predictions[SCORE_COLUMN], warn, alert)
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


def write_drift_report(report: DriftReport, settings: Settings) -> Path:
    """Write the report's JSON and PNG and its history line; return the JSON's path."""
    out = settings.monitoring_dir / "drift"
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
    _record(out / HISTORY_FILE, report.summary() | {"written_at": written_at})
    return path


def drift_history(settings: Settings) -> list[dict]:
    """The history lines, oldest batch first; ``[]`` before the first report."""
    return _read_history(settings.monitoring_dir / "drift" / HISTORY_FILE)


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


def _references(metadata: dict, key: str) -> dict:
    references = metadata.get(key)
    if not isinstance(references, dict) or not references:
        raise ValueError(
            f"model {metadata.get('version')} has no {key} in its metadata: "
            "it cannot be monitored for drift; retrain it with `churn train`"
        )
    return references


def _read_parquet(path: Path, columns: list[str]) -> pd.DataFrame:
    """``columns`` of the Parquet file ``path``; clear errors for a missing or broken file."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the batch is incomplete, rerun it")
    try:
        schema = pq.read_schema(path)
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise ValueError(f"{path} lacks the columns {missing}")
        return pq.read_table(path, columns=columns).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"cannot read {path}: corrupt or not Parquet ({exc})") from exc


def _read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            raise ValueError(f"corrupt drift history {path}, line {number}: {exc}") from exc
    return records


def _record(path: Path, line: dict) -> None:
    """Rewrite the history with ``line`` in place of any line of the same date, by date.

    The lock keeps two concurrent runs from each rewriting the file without the other's line.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / ".history.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            records = [r for r in _read_history(path) if r.get("as_of") != line["as_of"]]
            records = sorted([*records, line], key=lambda r: str(r.get("as_of")))
            write_text("".join(json.dumps(r) + "\n" for r in records), path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
