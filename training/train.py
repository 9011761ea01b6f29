"""``churn train``: labels → point-in-time training set → two tuned, calibrated models → registry.

Time-aware split over the as-of times T: validation is the newest
``validation_days`` T; training ends at least one horizon before validation
starts (an embargo: no training label looks into the validation period); the
last ``calibration_days`` of training are held out to calibrate. Each model kind's
parameters are searched on forward, user-disjoint folds of the fit part alone (``training.tuning``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from core.atomic import write_parquet
from core.settings import Settings
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from training import plots, registry
from training.dataset import FEATURE_SERVICE, training_set
from training.evaluation import evaluate
from training.labels import LABEL, build_labels
from training.models import (
    MODEL_KINDS,
    build_model,
    calibrate,
    informative_features,
    split_columns,
)
from training.references import oracle_score, recency_score, reference_bins
from training.tuning import Tuning, tune

log = logging.getLogger(__name__)
VALIDATION_ROWS = "validation.parquet"
LIBRARIES = ("scikit-learn", "feast", "pandas", "numpy", "duckdb", "pyarrow")
# Permutation importance re-scores the rows once per feature and repeat: a seeded
# sample keeps it to seconds at 100k users without changing the ranking it shows.
IMPORTANCE_ROWS = 20_000


@dataclass(frozen=True)
class Split:
    """As-of times of each part; fit and calibration end one horizon before validation."""

    fit: list[pd.Timestamp]
    calibration: list[pd.Timestamp]
    validation: list[pd.Timestamp]

    def describe(self) -> dict[str, list[str]]:
        return {
            name: [str(min(part)), str(max(part))]
            for name, part in (
                ("fit", self.fit),
                ("calibration", self.calibration),
                ("validation", self.validation),
            )
        }


@dataclass
class TrainResult:
    """What one ``churn train`` run produced, per model kind."""

    versions: dict[str, str]
    metrics: dict[str, dict]
    references: dict[str, dict]
    split: Split
    rows: dict[str, int]
    positive_rate: dict[str, float]
    missing: int
    tuning: dict[str, Tuning] = field(default_factory=dict)
    best: str = field(default="")


def time_split(asof: list[pd.Timestamp], settings: Settings) -> Split:
    """Split sorted as-of times; raises when too few remain for any part."""
    times = sorted(set(asof))
    validation = times[-settings.validation_days :]
    embargo_end = validation[0] - timedelta(days=settings.horizon_days)
    before = [t for t in times if t <= embargo_end]
    calibration = before[-settings.calibration_days :]
    fit = before[: -settings.calibration_days]
    if not fit:
        raise ValueError(
            f"{len(times)} as-of days leave nothing to fit on after {settings.validation_days} "
            f"validation days, a {settings.horizon_days}-day embargo and "
            f"{settings.calibration_days} calibration days: use a longer history"
        )
    return Split(fit, calibration, validation)


def _part(frame: pd.DataFrame, times: list[pd.Timestamp]) -> pd.DataFrame:
    return frame[frame[TIMESTAMP_FIELD].isin(times)].reset_index(drop=True)


def fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of the training rows: the same data gives the same fingerprint."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


@dataclass
class _Fitted:
    """One model kind fitted on a split: the calibrated model and what it showed."""

    model: object
    scores: np.ndarray
    importance: tuple[pd.Series, pd.Series]
    tuning: Tuning


def train_models(
    settings: Settings, now: datetime | None = None, labels: pd.DataFrame | None = None
) -> TrainResult:
    """Tune, train, calibrate, evaluate and register both models; returns what was stored.

    ``labels`` (default: ``build_labels(settings)``) are the label rows, in the frame
    ``build_labels`` returns: a test passes them permuted to check the gate refuses a model
    that learned nothing.
    """
    now = now or datetime.now(UTC)
    if labels is None:
        labels = build_labels(settings)
    elif missing := [c for c in (ENTITY_KEY, TIMESTAMP_FIELD, LABEL) if c not in labels.columns]:
        raise ValueError(f"labels lack the columns {missing}: pass the frame build_labels returns")
    data = training_set(settings, labels)
    frame = data.frame
    split = time_split(list(frame[TIMESTAMP_FIELD]), settings)
    fit, cal, val = (_part(frame, t) for t in (split.fit, split.calibration, split.validation))
    names, left_out = informative_features(fit, data.feature_names)
    if left_out:
        log.warning(
            "left out %d features that are null or constant in the training rows: %s",
            len(left_out), ", ".join(left_out),
        )  # fmt: skip
    numeric, categorical = split_columns(frame, names)
    y_val = val[LABEL].to_numpy()
    references, curves = _references(val, fit, settings)
    fitted = {
        kind: _fit_kind(kind, (fit, cal, val), names, (numeric, categorical), settings)
        for kind in MODEL_KINDS
    }
    metrics = _metrics(fitted, val, references, settings.top_k)
    rows = {"fit": len(fit), "calibration": len(cal), "validation": len(val)}
    positive_rate = {
        "fit": float(fit[LABEL].mean()),
        "calibration": float(cal[LABEL].mean()),
        "validation": float(y_val.mean()),
    }
    shared = {
        "run": now.isoformat(),  # the versions one `churn train` stores share it
        "created_at": now.isoformat(),
        "feature_service": FEATURE_SERVICE,
        "feature_refs": [ref for ref in data.feature_refs if ref.split(":", 1)[1] in names],
        "left_out_features": left_out,
        "numeric_features": numeric,
        "categorical_features": categorical,
        "label": LABEL,
        "horizon_days": settings.horizon_days,
        "active_lookback_days": settings.active_lookback_days,
        "windows": list(settings.windows),
        "split": split.describe(),
        "rows": rows | {"missing_features": len(data.missing)},
        "positive_rate": positive_rate,
        "fingerprint": fingerprint(frame[[ENTITY_KEY, TIMESTAMP_FIELD, LABEL, *names]]),
        "libraries": {lib: importlib.metadata.version(lib) for lib in LIBRARIES},
        "references": references,
        "reference_bins": reference_bins(pd.concat([fit, cal]), numeric, categorical),
        "calibration": {"method": "sigmoid", "rows": len(cal)},
        "all_models": metrics,
    }
    versions = _register(
        settings,
        now,
        shared,
        fitted,
        metrics,
        curves,
        val[[ENTITY_KEY, TIMESTAMP_FIELD, LABEL, *names]],
    )
    best = max(MODEL_KINDS, key=lambda kind: metrics[kind]["pr_auc"])
    tuning = {kind: fitted[kind].tuning for kind in MODEL_KINDS}
    return TrainResult(
        versions, metrics, references, split, rows, positive_rate, len(data.missing), tuning, best
    )


def _references(
    val: pd.DataFrame, fit: pd.DataFrame, settings: Settings
) -> tuple[dict[str, dict], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The references' metrics on the validation rows, and their curves to plot beside the
    models': recency, the base rate, and the oracle where the ground truth is known."""
    y_val, nights, k = val[LABEL].to_numpy(), val[TIMESTAMP_FIELD].to_numpy(), settings.top_k
    references = {
        "recency": evaluate(y_val, recency_score(val), k=k, is_probability=False, nights=nights),
        "base_rate": evaluate(y_val, np.full(len(val), fit[LABEL].mean()), k=k, nights=nights),
    }
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {"recency": (y_val, recency_score(val))}
    oracle = oracle_score(val, settings.ground_truth_dir)
    if oracle is not None:
        references["oracle"] = evaluate(y_val, oracle, k=k, nights=nights)
        curves["oracle (hidden state)"] = (y_val, oracle)
    return references, curves


def _metrics(
    fitted: dict[str, _Fitted], val: pd.DataFrame, references: dict[str, dict], k: int
) -> dict[str, dict]:
    """Each kind's validation metrics, with its ROC-AUC against recency and the oracle."""
    y_val, nights = val[LABEL].to_numpy(), val[TIMESTAMP_FIELD].to_numpy()
    metrics = {}
    for kind, one in fitted.items():
        metrics[kind] = evaluate(y_val, one.scores, k=k, nights=nights)
        if "oracle" in references:
            metrics[kind]["oracle_roc_auc_ratio"] = (
                metrics[kind]["roc_auc"] / references["oracle"]["roc_auc"]
            )
        metrics[kind]["roc_auc_over_recency"] = (
            metrics[kind]["roc_auc"] - references["recency"]["roc_auc"]
        )
    return metrics


def _fit_kind(
    kind: str,
    parts: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    names: list[str],
    columns: tuple[list[str], list[str]],
    settings: Settings,
) -> _Fitted:
    """Tune on the fit part, fit, calibrate on the calibration part, score validation, and
    measure permutation importance on a seeded sample of it."""
    fit, cal, val = parts
    numeric, categorical = columns
    tuning = tune(kind, fit, numeric, categorical, settings.tuning_budget, settings.seed)
    log.info("%s: %s", kind, tuning.summary())
    model = build_model(kind, numeric, categorical, settings.seed, tuning.chosen)
    model.fit(fit[names], fit[LABEL])
    calibrated = calibrate(model, cal[names], cal[LABEL])
    scores = calibrated.predict_proba(val[names])[:, 1]
    sample = val.sample(min(len(val), IMPORTANCE_ROWS), random_state=settings.seed)
    importance = permutation_importance(
        calibrated, sample[names], sample[LABEL], scoring="average_precision",
        n_repeats=3, random_state=settings.seed,
    )  # fmt: skip
    return _Fitted(
        calibrated,
        scores,
        (
            pd.Series(importance.importances_mean, index=names),
            pd.Series(importance.importances_std, index=names),
        ),
        tuning,
    )


def _register(
    settings: Settings,
    now: datetime,
    shared: dict,
    fitted: dict[str, _Fitted],
    metrics: dict[str, dict],
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    validation_rows: pd.DataFrame,
) -> dict[str, str]:
    """Store each kind as a version with its metadata, plots and the validation rows."""
    y_val = validation_rows[LABEL].to_numpy()
    scores = {kind: f.scores for kind, f in fitted.items()}
    versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        importances = {kind: f.importance for kind, f in fitted.items()}
        files = _plots(Path(tmp), curves, scores, y_val, importances)
        write_parquet(validation_rows, Path(tmp) / VALIDATION_ROWS)
        for kind, one in fitted.items():
            # Same run, same data: the kind tells the two versions apart.
            model_print = hashlib.sha256(f"{shared['fingerprint']}:{kind}".encode()).hexdigest()
            version = registry.new_version(now, model_print)
            score_bins = reference_bins(pd.DataFrame({"score": one.scores}), ["score"], [])
            metadata = shared | {
                "model_kind": kind,
                "metrics": metrics[kind],
                "tuning": one.tuning.to_dict(),
                "score_reference_bins": score_bins["score"],
                "importance": one.importance[0].sort_values(ascending=False).to_dict(),
            }
            files_for = files[kind] | {VALIDATION_ROWS: Path(tmp) / VALIDATION_ROWS}
            registry.save_model(settings.models_dir, version, one.model, metadata, files_for)
            versions[kind] = version
    return versions


def _plots(
    out: Path,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    scores: dict[str, np.ndarray],
    y_val: np.ndarray,
    importances: dict[str, tuple[pd.Series, pd.Series]],
) -> dict[str, dict[str, Path]]:
    """The PNGs each version carries: curves of both models beside the references."""
    models = {kind: (y_val, scores[kind]) for kind in MODEL_KINDS}
    shared = {
        "pr_curve.png": plots.pr_curves(models | curves, out / "pr_curve.png"),
        "roc_curve.png": plots.roc_curves(models | curves, out / "roc_curve.png"),
        "reliability.png": plots.reliability(models, out / "reliability.png"),
    }
    files = {}
    for kind in MODEL_KINDS:
        mean, std = importances[kind]
        path = plots.feature_importance(
            mean, std, out / f"importance_{kind}.png", title=f"Permutation importance ({kind})"
        )
        files[kind] = shared | {"feature_importance.png": path}
    return files
