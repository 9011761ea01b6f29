"""``churn batch score``: the nightly churn risk of everyone recently active, as of T.

T is a UTC midnight (default: today's). Features come only from Feast's point-in-time
join with the production model's feature references: the row for day D is stamped
D+1 00:00 UTC, so at T = today 00:00 each user gets yesterday's row (or the newest one
within the view TTL), exactly as training labels at T see them. The output, the batch
directory of T's date (``batch.outputs``), is built aside and swapped in whole: a re-run
replaces that date, a failed run leaves the previous output as it was. With
``CHURN_EXPORT_DIR`` set, the list is then delivered there (``batch.export``); when it
cannot be, the batch stays written and the run fails all the same: the retention team
did not get the list.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from feast import FeatureStore
from rich.console import Console
from rich.table import Table

from batch.export import Export, ExportError, export_list
from batch.high_risk import high_risk_list
from batch.outputs import (
    FEATURES_FILE,
    HIGH_RISK_FILE,
    PREDICTION_COLUMNS,
    PREDICTIONS_FILE,
    RUN_FILE,
    batch_dir,
)
from core import partitions
from core.atomic import atomic_dir, write_json, write_parquet, write_text
from core.budget import check_fits
from core.engines import open_engine
from core.push import Sample, job_name, push
from core.settings import Settings
from core.sql_engine import Engine, utc_timestamps
from core.tables import USER_DAILY, MissingInputError, register_table, validated_paths
from core.timeline import day_of, midnight, require_midnight, stamp_of
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from feature_repo.store import open_offline_store, view_ttl
from served import registry
from served.arms import CONTACT, HOLDOUT, UNLISTED, write_assignments
from served.card import load_served
from served.population import lookback_window, population_sql
from served.registry import Classifier
from served.risk_bands import risk_bands
from training.dataset import newest_rows_sql, point_in_time_join

log = logging.getLogger(__name__)

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
SKIPPED_EXAMPLES = 10
PUSH_JOB = job_name("batch")
USER_FEATURES = "user_features"


@dataclass(frozen=True)
class BatchResult:
    """What one run scored and wrote; ``run.json`` holds the same figures."""

    as_of: datetime
    model_version: str
    output_dir: Path
    population: int
    scored: int
    skipped: int
    skipped_examples: list[str]
    high_risk: int
    bands: dict[str, int]
    score_quantiles: dict[str, float]
    started_at: datetime
    finished_at: datetime
    duration_s: float
    arms: dict[str, int] = field(default_factory=dict)  # the list's users by arm
    pushed: bool = field(default=False, compare=False)
    exported: Export | None = field(default=None, compare=False)  # None: no CHURN_EXPORT_DIR

    def run_record(self) -> dict:
        """The ``run.json`` payload (dates as ISO 8601 strings)."""
        record = asdict(self)
        del record["output_dir"], record["pushed"], record["exported"]
        for key in ("as_of", "started_at", "finished_at"):
            record[key] = record[key].isoformat()
        return record


def run_time(as_of: datetime | None = None, now: datetime | None = None) -> datetime:
    """T: ``as_of`` (which must be a UTC midnight), or today 00:00 UTC.

    Midnight only: feature rows are stamped at midnights and the output is named by
    the date, so a T inside a day would score the same features under a misleading name.
    """
    if as_of is None:
        return midnight(now or datetime.now(UTC))
    return require_midnight(as_of)


def rank_scores(user_ids: pd.Series, risks: np.ndarray, settings: Settings) -> pd.DataFrame:
    """``user_id, churn_risk, risk_band, rank``, riskiest first (rank 1); ties by user id."""
    frame = pd.DataFrame({ENTITY_KEY: user_ids.to_numpy(), "churn_risk": risks})
    frame = frame.sort_values(
        ["churn_risk", ENTITY_KEY], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)
    frame["risk_band"] = risk_bands(frame["churn_risk"].to_numpy(), settings)
    frame["rank"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    return frame


def score_quantiles(risks: np.ndarray) -> dict[str, float]:
    """p50, p90, p99 of the scores: the shape a dashboard follows night to night."""
    values = np.quantile(risks, list(QUANTILES.values()))
    return {name: float(v) for name, v in zip(QUANTILES, values, strict=True)}


def batch_samples(result: BatchResult) -> list[Sample]:
    """The job's Pushgateway gauges (``churn_batch_*``)."""
    samples = [
        Sample("churn_batch_duration_seconds", result.duration_s, "Duration of the last run"),
        Sample("churn_batch_users_scored", result.scored, "Users scored by the last run"),
        Sample(
            "churn_batch_users_skipped",
            result.skipped,
            "Active users the last run could not score: no feature row within the view TTL",
        ),
        Sample(
            "churn_batch_high_risk_users",
            result.high_risk,
            "Users on the last run's high-risk list (top K plus the high band)",
        ),
        Sample(
            "churn_batch_holdout_users",
            result.arms.get(HOLDOUT, 0),
            "Users of the last run's list kept back from outreach (the holdout arm)",
        ),
    ]
    samples += [
        Sample(
            "churn_batch_score_quantile",
            result.score_quantiles[name],
            "Quantiles of the last run's churn risk",
            {"quantile": str(q)},
        )
        for name, q in QUANTILES.items()
    ]
    if result.exported is not None:
        samples.append(
            Sample(
                "churn_batch_exported_rows",
                result.exported.rows,
                "Rows of the last run's list delivered to CHURN_EXPORT_DIR",
            )
        )
    samples += [
        Sample(
            "churn_batch_last_success_timestamp_seconds",
            result.finished_at.timestamp(),
            "Unix time the last successful run finished",
        ),
        Sample(
            "churn_batch_model_info",
            1,
            "Model version the last run scored with",
            {"version": result.model_version},
        ),
    ]
    return samples


def score_population(
    settings: Settings,
    as_of: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Score the population at T with the production model; write and return the run.

    Users active in the lookback but without a feature row within the view TTL are
    counted as skipped, never scored with made-up values. ``progress(done, total)``
    follows the point-in-time join. Raises (and writes nothing) when there is no
    production model, no population, or no user with features; raises ExportError, the
    batch written but nothing pushed, when ``export_dir`` is set and cannot take the list.
    """
    started_at, clock = datetime.now(UTC), time.perf_counter()
    as_of = run_time(as_of)
    version, model, refs = production_model(settings)
    validated_paths(settings)  # the high-risk list reads them: fail before the long join

    engine = open_engine(settings)
    users = population(settings, engine, as_of)
    if engine.name != "spark":  # Spark joins and scores on its executors
        check_fits(settings, batch_bytes(len(users)), f"scoring {len(users):,} users in process")
    store = open_offline_store(settings)
    features, risks, skipped = join_and_score(engine, store, users, as_of, refs, model, progress)
    ttl = view_ttl(store)  # the TTL Feast's join just applied
    check_scored(settings, as_of, ttl, users, features, skipped)
    predictions = ranked_predictions(settings, engine, as_of, ttl, features, risks, version)
    high_risk = high_risk_list(settings, engine, predictions, as_of)
    predictions = with_arms(predictions, high_risk)

    target = batch_dir(settings.predictions_dir, as_of.date())
    # Staged beside predictions_dir, not in it: readers scan predictions_dir for as_of=*.
    with atomic_dir(target, staging=settings.predictions_dir.parent) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it private; the retention team reads it
        write_parquet(predictions, tmp / PREDICTIONS_FILE)
        write_parquet(features, tmp / FEATURES_FILE)
        write_text(high_risk.to_csv(index=False), tmp / HIGH_RISK_FILE)
        finished_at = datetime.now(UTC)
        result = BatchResult(
            as_of=as_of,
            model_version=version,
            output_dir=target,
            population=len(users),
            scored=len(predictions),
            skipped=len(skipped),
            skipped_examples=skipped[:SKIPPED_EXAMPLES],
            high_risk=len(high_risk),
            bands={
                b: int((predictions["risk_band"] == b).sum()) for b in ("high", "medium", "low")
            },
            score_quantiles=score_quantiles(risks),
            started_at=started_at,
            finished_at=finished_at,
            duration_s=round(time.perf_counter() - clock, 3),
            arms={arm: int((high_risk["arm"] == arm).sum()) for arm in (CONTACT, HOLDOUT)},
        )
        write_json(result.run_record(), tmp / RUN_FILE)
        # Last before the batch is swapped in: a list delivered has its arms on record.
        write_assignments(settings, as_of.date(), high_risk)
    log.info(
        "batch %s: %d scored, %d skipped, %d on the high-risk list, model %s",
        f"{as_of:%Y-%m-%d}", result.scored, result.skipped, result.high_risk, version,
    )  # fmt: skip
    if settings.export_dir is not None:
        exported = export(result, settings.export_dir, keep_nights=settings.horizon_days)
        result = replace(result, exported=exported)
    return replace(result, pushed=push(settings, PUSH_JOB, batch_samples(result)))


def export(result: BatchResult, export_dir: Path, keep_nights: int) -> Export:
    """The run's ``high_risk.csv`` delivered to ``export_dir``; the job keeps dated lists for
    one churn horizon (the nights whose listed users may still churn as predicted)."""
    try:
        exported = export_list(
            result.output_dir / HIGH_RISK_FILE,
            export_dir,
            result.as_of,
            result.model_version,
            keep_nights=keep_nights,
        )
    except ExportError as exc:
        raise ExportError(f"{exc}; the batch itself is written in {result.output_dir}") from exc
    if exported.file is not None:
        log.info("exported %d rows to %s", exported.rows, exported.file)
    return exported


# Measured at 1,000,000 users (bench-night, the night's batch): a 3.28 GB peak, about 0.6 GB
# of it the process and the model, the rest Feast's join of one T and the frames scored,
# about 2,700 bytes a user; the estimate takes 1.5 times that.
BATCH_BASE_BYTES = 600_000_000
BATCH_BYTES_PER_USER = 4_000


def batch_bytes(users: int) -> int:
    """What scoring ``users`` in this process holds at its peak, about."""
    return BATCH_BASE_BYTES + BATCH_BYTES_PER_USER * users


def production_model(settings: Settings) -> tuple[str, Classifier, list[str]]:
    """The production model's version, the model, and its feature references."""
    version = registry.production(settings.models_dir)
    if version is None:
        raise registry.RegistryError(
            f"no production model in {settings.models_dir}: run `churn promote`"
        )
    model, card = load_served(settings.models_dir, version)
    return version, model, list(card.feature_refs)


def join_and_score(
    engine: Engine,
    store: FeatureStore,
    users: list[str],
    as_of: datetime,
    refs: list[str],
    model: Classifier,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """``(features, risks, skipped)`` of ``users`` at T, on the engine's side: on Spark
    under ``CHURN_ENGINE=spark`` (``batch.spark_predict``), in this process otherwise."""
    entity_rows = pd.DataFrame({ENTITY_KEY: users, TIMESTAMP_FIELD: pd.Timestamp(as_of)})
    if progress is not None:
        progress(0, 1)
    if engine.name == "spark":
        from batch.spark_predict import score_on_spark
        from core.spark_engine import SparkEngine

        assert isinstance(engine, SparkEngine)  # open_engine's engine named spark is one
        return score_on_spark(engine, store, entity_rows, refs, model, progress)
    return score_in_process(store, entity_rows, refs, model, progress)


def check_scored(
    settings: Settings,
    as_of: datetime,
    ttl: timedelta,
    users: list[str],
    features: pd.DataFrame,
    skipped: list[str],
) -> None:
    """Raise when no user had features within the TTL; log the users skipped for want of them."""
    if features.empty:
        raise ValueError(
            f"none of the {len(users):,} active users has a feature row stamped within "
            f"{_days(ttl)} before {as_of.isoformat()} in {settings.features_path}: "
            "run `churn features build` up to the day before T"
        )
    if skipped:
        log.warning(
            "%d of %d active users have no features within %s of %s (e.g. %s)",
            len(skipped), len(users), _days(ttl), as_of.isoformat(), ", ".join(skipped[:3]),
        )  # fmt: skip


def ranked_predictions(
    settings: Settings,
    engine: Engine,
    as_of: datetime,
    ttl: timedelta,
    features: pd.DataFrame,
    risks: np.ndarray,
    version: str,
) -> pd.DataFrame:
    """The ``PREDICTION_COLUMNS`` rows but the arm, riskiest first, each with its feature
    row's stamp."""
    predictions = rank_scores(features[ENTITY_KEY], risks, settings)
    predictions = predictions.merge(
        feature_stamps(settings, engine, as_of, ttl),
        on=ENTITY_KEY,
        how="left",
        validate="one_to_one",
    )
    if predictions["features_as_of"].isna().any():
        raise ValueError(
            f"{int(predictions['features_as_of'].isna().sum())} scored users have no feature "
            f"row within {_days(ttl)} of {as_of.isoformat()} in {settings.features_path}, yet Feast "
            "joined features for them: is the registry applied from this data dir?"
        )
    predictions["model_version"] = version
    return predictions


def with_arms(predictions: pd.DataFrame, high_risk: pd.DataFrame) -> pd.DataFrame:
    """``PREDICTION_COLUMNS``: each prediction with its arm on the list, or ``unlisted``."""
    arms = predictions[ENTITY_KEY].map(high_risk.set_index(ENTITY_KEY)["arm"])
    return predictions.assign(arm=arms.fillna(UNLISTED).astype(str))[PREDICTION_COLUMNS]


def score_in_process(
    store: FeatureStore,
    entity_rows: pd.DataFrame,
    refs: list[str],
    model: Classifier,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """``(features, risks, skipped)``: Feast's join and ``predict_proba`` in this process.

    ``features`` holds the rows as scored, by user id; users with no feature row
    within the TTL are ``skipped`` (``batch.spark_predict`` is the Spark counterpart).
    """
    names = [ref.split(":", 1)[1] for ref in refs]
    joined = point_in_time_join(store, entity_rows, refs, progress=progress)
    no_features = joined[names].isna().all(axis=1)
    skipped = sorted(joined.loc[no_features, ENTITY_KEY])
    features = joined.loc[~no_features, [ENTITY_KEY, *names]].reset_index(drop=True)
    risks = model.predict_proba(features[names])[:, 1] if len(features) else np.empty(0)
    return features, risks, skipped


def population(settings: Settings, engine: Engine, as_of: datetime) -> list[str]:
    """Ids of the users active in the lookback before T; errors name what to run."""
    days = partitions.partition_days(settings.user_daily_path)
    if not days:
        raise MissingInputError(
            f"{settings.user_daily_path} is empty or missing: run `churn data prepare` first"
        )
    if days[-1] < day_of(as_of):
        log.warning(
            "user_daily ends on %s, before the day before T (%s): the lookback is cut short",
            days[-1], as_of.date(),
        )  # fmt: skip
    first, end = lookback_window(settings.active_lookback_days).days(as_of.date())
    lookback = [d for d in days if first <= d < end]
    users = []
    if lookback:
        register_table(engine, USER_DAILY, settings.user_daily_path, lookback)
        sql = population_sql(as_of.date(), settings.active_lookback_days)
        users = [row[0] for row in engine.rows(sql)]
    if not users:
        raise ValueError(
            f"nobody was active in [{first}, {end}) in {settings.user_daily_path} "
            f"(its days: {days[0]} … {days[-1]}): nothing to score at {as_of.isoformat()}"
        )
    return users


def feature_stamps(
    settings: Settings, engine: Engine, as_of: datetime, ttl: timedelta
) -> pd.DataFrame:
    """``user_id, features_as_of``: the stamp of each user's feature row used at T.

    Reads only the days whose rows are stamped (day + 1) within the TTL before T.
    """
    window = [
        d
        for d in partitions.partition_days(settings.features_path)
        if as_of - ttl <= stamp_of(d) <= as_of
    ]
    if not window:
        raise ValueError(
            f"{settings.features_path} has no day stamped within {_days(ttl)} before "
            f"{as_of.isoformat()}, yet Feast joined features: is the registry applied from "
            "this data dir?"
        )
    register_table(engine, USER_FEATURES, settings.features_path, window)
    stamps = engine.frame(newest_rows_sql(USER_FEATURES, as_of, ttl))
    stamps["features_as_of"] = utc_timestamps(stamps["features_as_of"])
    return stamps


def _days(span: timedelta) -> str:
    return f"{span / timedelta(days=1):g} days"


def print_batch(result: BatchResult, console: Console) -> None:
    """A short summary of a run for the console."""
    table = Table(title=f"Batch scores as of {result.as_of:%Y-%m-%d} (T = 00:00 UTC)")
    table.add_column("")
    table.add_column("value", justify="right")
    q = result.score_quantiles
    skipped = f"{result.skipped:,}"
    if result.skipped_examples:
        skipped += f" (e.g. {', '.join(result.skipped_examples[:3])})"
    rows = [
        ("model", result.model_version),
        ("active users", f"{result.population:,}"),
        ("scored", f"{result.scored:,}"),
        ("skipped: no features", skipped),
        ("bands high / medium / low", " / ".join(f"{n:,}" for n in result.bands.values())),
        ("high-risk list", f"{result.high_risk:,}"),
        (
            "  contact / holdout",
            " / ".join(f"{result.arms.get(a, 0):,}" for a in (CONTACT, HOLDOUT)),
        ),
        ("risk p50 / p90 / p99", f"{q['p50']:.3f} / {q['p90']:.3f} / {q['p99']:.3f}"),
        ("seconds", f"{result.duration_s:.1f}"),
        ("output", str(result.output_dir)),
    ]
    if result.exported is not None:
        rows.append(("exported", str(result.exported.file or "no: older than the nights kept")))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
