"""``churn train``: labels → point-in-time training set → two tuned, calibrated models → registry.

Time-aware split over the as-of times T: validation is the newest
``validation_days`` T; training ends at least one horizon before validation
starts (an embargo: no training label looks into the validation period); the
last ``calibration_days`` of training are held out to calibrate. Each model kind's
parameters are searched on forward, user-disjoint folds of the fit part alone (``training.tuning``).

Bounded memory: the fit and calibration rows are those of a sample of whole users
(``training.sampling``: as many as ``CHURN_MEMORY_BUDGET`` holds, or
``CHURN_TRAIN_MAX_USERS``), drawn before the point-in-time join. Validation is every user
of the validation days, joined and scored in chunks: the gate compares a candidate with
recency and with production on the same rows whatever the sample, and a sampled fit and a
full one are judged on the same rows.
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
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore
from sklearn.inspection import permutation_importance

from core.settings import Settings
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from feature_repo.store import open_offline_store
from served import registry
from served.population import RECENCY
from served.registry import Classifier
from training import plots
from training.dataset import (
    FEATURE_SERVICE,
    feature_refs,
    point_in_time_join,
    training_set,
    without_missing,
)
from training.evaluation import evaluate
from training.labels import LABEL, AsOfRange, as_of_days, build_labels, label_counts
from training.models import (
    MODEL_KINDS,
    ModelKind,
    build_model,
    calibrate,
    informative_features,
    scale_to_rows,
    split_columns,
)
from training.references import oracle_score, recency_score, reference_bins
from training.sampling import VALIDATION_CHUNK_ROWS, UserSample, plan_sample
from training.tuning import Tuning, tune

log = logging.getLogger(__name__)
VALIDATION_ROWS = "validation.parquet"
LIBRARIES = ("scikit-learn", "feast", "pandas", "numpy", "duckdb", "pyarrow")
# Permutation importance re-scores the rows once per feature and repeat: a seeded
# sample keeps it to seconds at 100k users without changing the ranking it shows.
IMPORTANCE_ROWS = 20_000
IMPORTANCE_MARK = "importance_sample"  # carried through the join: the rows drawn for it


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
    sample: UserSample | None = None


def time_split(asof: list[pd.Timestamp], settings: Settings) -> Split:
    """Split sorted as-of times; raises when too few remain for any part."""
    times = sorted(set(asof))
    validation = times[-settings.validation_days :]
    embargo_end = validation[0] - timedelta(days=settings.horizon_days)
    before = [t for t in times if t <= embargo_end]
    calibration = before[-settings.calibration_days :]
    fit = before[: -settings.calibration_days]
    if not fit:
        # The first fit time is calibration_days strides before the last one the embargo
        # leaves, itself the grid's last time a horizon or more before validation.
        stride = settings.asof_stride_days
        strides = -(-settings.horizon_days // stride) + settings.calibration_days
        short = (times[0] - (validation[0] - timedelta(days=strides * stride))).days
        raise ValueError(
            f"{len(times)} as-of days leave nothing to fit on after {settings.validation_days} "
            f"validation days, a {settings.horizon_days}-day embargo and "
            f"{settings.calibration_days} calibration days: use a longer history "
            f"({short} more days)"
        )
    return Split(fit, calibration, validation)


def _part(frame: pd.DataFrame, times: list[pd.Timestamp]) -> pd.DataFrame:
    return frame[frame[TIMESTAMP_FIELD].isin(times)].reset_index(drop=True)


def fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of the training rows: the same data gives the same fingerprint."""
    return _digest(hashlib.sha256(), frame).hexdigest()


def _digest(hasher: hashlib._Hash, frame: pd.DataFrame) -> hashlib._Hash:
    """``hasher`` updated with ``frame``'s rows: chunk after chunk gives one fingerprint."""
    hasher.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return hasher


@dataclass(frozen=True)
class TrainingLabels:
    """Label rows: the sample's at the fit and calibration times, everyone's at validation."""

    fit: pd.DataFrame
    validation: pd.DataFrame
    split: Split
    sample: UserSample


def training_labels(
    settings: Settings, features: int, labels: pd.DataFrame | None = None
) -> TrainingLabels:
    """The split, the user sample and the label rows it keeps (``labels``: given rows, else
    ``build_labels``'s, where only the sample's fit rows and the validation rows are read)."""
    if labels is not None:
        split = time_split(list(labels[TIMESTAMP_FIELD]), settings)
        early = labels[labels[TIMESTAMP_FIELD].isin(split.fit + split.calibration)]
        validation = labels[labels[TIMESTAMP_FIELD].isin(split.validation)]
        counts = early.groupby(ENTITY_KEY).size()
        sample = plan_sample(settings, counts, features, len(validation))
        fit = early[early[ENTITY_KEY].isin(sample.users)] if sample.sampled else early
        return TrainingLabels(fit.reset_index(drop=True), validation.reset_index(drop=True),
                              split, sample)  # fmt: skip
    asof = as_of_days(settings)
    split = time_split([pd.Timestamp(day, tz=UTC) for day in asof.days()], settings)
    early = AsOfRange(asof.first, max(split.calibration).date(), asof.stride)
    counts = label_counts(settings, early)
    # Validation rows to come: about as many per as-of time as the fit's.
    times = len(split.fit) + len(split.calibration)
    validation_rows = int(counts.sum() * len(split.validation) / times)
    sample = plan_sample(settings, counts, features, validation_rows)
    fit = build_labels(settings, early, sample.users if sample.sampled else None)
    late = AsOfRange(min(split.validation).date(), asof.last, asof.stride)
    return TrainingLabels(fit, build_labels(settings, late), split, sample)


@dataclass
class _Fitted:
    """One model kind fitted on a split: the calibrated model and what it showed."""

    model: Classifier
    scores: np.ndarray
    importance: tuple[pd.Series, pd.Series]
    tuning: Tuning
    params: dict[str, float]


@dataclass
class Validated:
    """The validation rows scored in chunks: their keys, label and recency, each model's
    scores, the rows drawn for permutation importance, and those without features."""

    rows: pd.DataFrame
    scores: dict[str, np.ndarray]
    importance_rows: pd.DataFrame
    missing: int


def train_models(
    settings: Settings, now: datetime | None = None, labels: pd.DataFrame | None = None
) -> TrainResult:
    """Tune, train, calibrate, evaluate and register both models; returns what was stored.

    ``labels`` (default: ``build_labels(settings)``) are the label rows, in the frame
    ``build_labels`` returns: a test passes them permuted to check the gate refuses a model
    that learned nothing. Raises ``core.budget.BudgetTooSmallError`` before any join
    when the memory budget cannot hold a useful sample.
    """
    now = now or datetime.now(UTC)
    if labels is not None and (
        missing := [c for c in (ENTITY_KEY, TIMESTAMP_FIELD, LABEL) if c not in labels.columns]
    ):
        raise ValueError(f"labels lack the columns {missing}: pass the frame build_labels returns")
    store = open_offline_store(settings)
    refs = feature_refs(store, FEATURE_SERVICE)
    chosen = training_labels(settings, len(refs), labels)
    split = chosen.split
    log.info("fitting on %s (cap %s)", chosen.sample.describe(), chosen.sample.cap_from)
    data = training_set(settings, chosen.fit)
    fit, cal = (_part(data.frame, t) for t in (split.fit, split.calibration))
    names, left_out = informative_features(fit, data.feature_names)
    if left_out:
        log.warning(
            "left out %d features that are null or constant in the training rows: %s",
            len(left_out), ", ".join(left_out),
        )  # fmt: skip
    numeric, categorical = split_columns(fit, names)
    columns = [ENTITY_KEY, TIMESTAMP_FIELD, LABEL, *names]
    hasher = _digest(hashlib.sha256(), data.frame[columns])
    del data  # the fit and calibration parts are all that is needed of it
    models = {kind: _fit_kind(kind, (fit, cal), names, (numeric, categorical), settings)
              for kind in MODEL_KINDS}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        rows_path = Path(tmp) / VALIDATION_ROWS
        val = score_validation(
            store, chosen.validation, refs, {k: m[0] for k, m in models.items()},
            (columns, pa_schema(fit[columns])), rows_path, hasher, settings.seed,
        )  # fmt: skip
        fitted: dict[str, _Fitted] = {
            kind: _explained(kind, models[kind], val, names, settings.seed) for kind in MODEL_KINDS
        }
        result = _store(settings, now, (fit, cal, val), fitted, chosen, (names, left_out,
                        numeric, categorical), refs, hasher.hexdigest(), rows_path)  # fmt: skip
    return result


def _store(
    settings: Settings,
    now: datetime,
    parts: tuple[pd.DataFrame, pd.DataFrame, Validated],
    fitted: dict[str, _Fitted],
    chosen: TrainingLabels,
    features: tuple[list[str], list[str], list[str], list[str]],
    refs: list[str],
    print_: str,
    rows_path: Path,
) -> TrainResult:
    """Metrics, references and metadata of the fitted kinds; registers them."""
    fit, cal, val = parts
    names, left_out, numeric, categorical = features
    split = chosen.split
    references, curves = _references(val.rows, fit, settings)
    metrics = _metrics(fitted, val.rows, references, settings.top_k)
    rows = {"fit": len(fit), "calibration": len(cal), "validation": len(val.rows)}
    missing = len(chosen.fit) - len(fit) - len(cal) + val.missing
    positive_rate = {
        "fit": float(fit[LABEL].mean()),
        "calibration": float(cal[LABEL].mean()),
        "validation": float(val.rows[LABEL].mean()),
    }
    shared = {
        "run": now.isoformat(),  # the versions one `churn train` stores share it
        "created_at": now.isoformat(),
        "feature_service": FEATURE_SERVICE,
        "feature_refs": [ref for ref in refs if ref.split(":", 1)[1] in names],
        "left_out_features": left_out,
        "numeric_features": numeric,
        "categorical_features": categorical,
        "label": LABEL,
        "horizon_days": settings.horizon_days,
        "active_lookback_days": settings.active_lookback_days,
        "windows": list(settings.windows),
        "split": split.describe(),
        "rows": rows | {"missing_features": missing},
        # Fit and calibration rows are the sample's; validation rows are every user's.
        "sample": chosen.sample.to_dict() | {"validation": "every user of the validation days"},
        "positive_rate": positive_rate,
        "fingerprint": print_,
        "libraries": {lib: importlib.metadata.version(lib) for lib in LIBRARIES},
        "references": references,
        "reference_bins": reference_bins(pd.concat([fit, cal]), numeric, categorical),
        "calibration": {"method": "sigmoid", "rows": len(cal)},
        "all_models": metrics,
    }
    y_val = val.rows[LABEL].to_numpy()
    versions = _register(settings, now, shared, fitted, metrics, curves, y_val, rows_path)
    best = max(MODEL_KINDS, key=lambda kind: metrics[kind]["pr_auc"])
    tuning: dict[str, Tuning] = {kind: fitted[kind].tuning for kind in MODEL_KINDS}
    return TrainResult(versions, metrics, references, split, rows, positive_rate, missing,
                       tuning, best, chosen.sample)  # fmt: skip


def pa_schema(frame: pd.DataFrame) -> pa.Schema:
    """The Arrow schema of the validation rows file, from the fit rows (a column null in
    them is a string column: the categoricals)."""
    schema = pa.Schema.from_pandas(frame, preserve_index=False).remove_metadata()
    for i, one in enumerate(schema):
        if pa.types.is_null(one.type):
            schema = schema.set(i, pa.field(one.name, pa.string()))
    return schema


def score_validation(
    store: FeatureStore,
    labels: pd.DataFrame,
    refs: list[str],
    models: dict[str, Classifier],
    layout: tuple[list[str], pa.Schema],
    out: Path,
    hasher: hashlib._Hash,
    seed: int,
) -> Validated:
    """Join, score and write the validation rows ``VALIDATION_CHUNK_ROWS`` at a time.

    Memory holds one chunk's features, and of every row its keys, label, recency and
    scores. ``layout``: the columns written to ``out`` (the promotion gate scores
    production on them) and their schema; ``hasher`` takes each chunk for the fingerprint.
    """
    columns, schema = layout
    names = columns[3:]
    rows = labels.sort_values([TIMESTAMP_FIELD, ENTITY_KEY]).reset_index(drop=True)
    drawn = np.random.default_rng(seed).choice(len(rows), min(len(rows), IMPORTANCE_ROWS),
                                               replace=False)  # fmt: skip
    rows[IMPORTANCE_MARK] = np.isin(np.arange(len(rows)), drawn).astype("int8")
    kept, marked, missing = [], [], 0
    scores: dict[str, list[np.ndarray]] = {kind: [] for kind in models}
    chunks = range(0, len(rows), VALIDATION_CHUNK_ROWS)
    with pq.ParquetWriter(out, schema) as writer:
        for i, lo in enumerate(chunks):
            joined = point_in_time_join(store, rows.iloc[lo : lo + VALIDATION_CHUNK_ROWS], refs)
            part, lost = without_missing(joined, [ref.split(":", 1)[1] for ref in refs])
            missing += len(lost)
            writer.write_table(pa.Table.from_pandas(part[columns], schema=schema,
                                                    preserve_index=False))  # fmt: skip
            _digest(hasher, part[columns])
            for kind, model in models.items():
                scores[kind].append(model.predict_proba(part[names])[:, 1])
            kept.append(part[[ENTITY_KEY, TIMESTAMP_FIELD, LABEL, RECENCY]])
            marked.append(part.loc[part[IMPORTANCE_MARK] == 1, columns])
            log.info("validation: scored chunk %d of %d (%d rows)", i + 1, len(chunks), len(part))
    return Validated(
        pd.concat(kept, ignore_index=True),
        {kind: np.concatenate(parts) for kind, parts in scores.items()},
        pd.concat(marked, ignore_index=True),
        missing,
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
    kind: ModelKind,
    parts: tuple[pd.DataFrame, pd.DataFrame],
    names: list[str],
    columns: tuple[list[str], list[str]],
    settings: Settings,
) -> tuple[Classifier, Tuning, dict[str, float]]:
    """Tune on the fit part, fit with the chosen parameters scaled to the fit's rows,
    calibrate on the calibration part: (calibrated model, tuning, parameters fitted)."""
    fit, cal = parts
    numeric, categorical = columns
    tuning = tune(kind, fit, numeric, categorical, settings.tuning_budget, settings.seed)
    params = scale_to_rows(kind, tuning.chosen, len(fit))
    log.info("%s: %s; fitted with %s on %d rows", kind, tuning.summary(), params, len(fit))
    model = build_model(kind, numeric, categorical, settings.seed, params)
    model.fit(fit[names], fit[LABEL])
    return calibrate(model, cal[names], cal[LABEL]), tuning, params


def _explained(
    kind: str, model: tuple[Classifier, Tuning, dict[str, float]], val: Validated, names: list[str],
    seed: int,
) -> _Fitted:  # fmt: skip
    """The kind's validation scores and permutation importance on the drawn rows."""
    calibrated, tuning, params = model
    sample = val.importance_rows
    importance = permutation_importance(
        calibrated, sample[names], sample[LABEL], scoring="average_precision",
        n_repeats=3, random_state=seed,
    )  # fmt: skip
    return _Fitted(
        calibrated,
        val.scores[kind],
        (
            pd.Series(importance.importances_mean, index=names),
            pd.Series(importance.importances_std, index=names),
        ),
        tuning,
        params,
    )


def _register(
    settings: Settings,
    now: datetime,
    shared: dict,
    fitted: dict[str, _Fitted],
    metrics: dict[str, dict],
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    y_val: np.ndarray,
    rows_path: Path,
) -> dict[str, str]:
    """Store each kind as a version with its metadata, plots and the validation rows."""
    scores = {kind: f.scores for kind, f in fitted.items()}
    versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        importances = {kind: f.importance for kind, f in fitted.items()}
        files = _plots(Path(tmp), curves, scores, y_val, importances)
        for kind, one in fitted.items():
            # Same run, same data: the kind tells the two versions apart.
            model_print = hashlib.sha256(f"{shared['fingerprint']}:{kind}".encode()).hexdigest()
            version = registry.new_version(now, model_print)
            score_bins = reference_bins(pd.DataFrame({"score": one.scores}), ["score"], [])
            metadata = shared | {
                "model_kind": kind,
                "metrics": metrics[kind],
                "tuning": one.tuning.to_dict(),
                "fitted_params": one.params,  # the chosen ones scaled to the fit's rows
                "score_reference_bins": score_bins["score"],
                "importance": one.importance[0].sort_values(ascending=False).to_dict(),
            }
            files_for = files[kind] | {VALIDATION_ROWS: rows_path}
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
    models: plots.Curves = {kind: (y_val, scores[kind]) for kind in MODEL_KINDS}
    shared = {
        "pr_curve.png": plots.pr_curves(models | curves, out / "pr_curve.png"),
        "roc_curve.png": plots.roc_curves(models | curves, out / "roc_curve.png"),
        "reliability.png": plots.reliability(models, out / "reliability.png"),
    }
    files: dict[str, dict[str, Path]] = {}
    for kind in MODEL_KINDS:
        mean, std = importances[kind]
        path = plots.feature_importance(
            mean, std, out / f"importance_{kind}.png", title=f"Permutation importance ({kind})"
        )
        files[kind] = shared | {"feature_importance.png": path}
    return files
