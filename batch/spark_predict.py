"""Batch scoring on Spark: Feast's Spark point-in-time join, the model broadcast once,
``predict_proba`` partition by partition in ``mapInPandas``.

Only the scored rows come back to the driver, where ``batch.job`` ranks them and
writes the same files as the embedded path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial, reduce
from operator import or_
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
from feast import FeatureStore
from pyspark import Broadcast
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from core.spark_engine import SparkEngine, utc_frame
from feature_repo.spec import ENTITY_KEY

if TYPE_CHECKING:
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import SparkRetrievalJob

SCORE = "churn_risk"


def _score_batches(
    model: Broadcast, names: list[str], batches: Iterator[pd.DataFrame]
) -> Iterator[pd.DataFrame]:
    """Each Arrow batch of a partition with its churn risk (runs on the executors)."""
    for rows in batches:
        yield rows.assign(**{SCORE: model.value.predict_proba(rows[names])[:, 1]})


def score_on_spark(
    engine: SparkEngine,
    store: FeatureStore,
    entity_rows: pd.DataFrame,
    refs: list[str],
    model: object,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """``(features, risks, skipped)`` for ``entity_rows`` (user_id, event_timestamp = T),
    as ``batch.job.score_in_process`` returns them.

    ``features`` holds the rows as scored (user_id and the model's features, in
    ``refs`` order); users with no feature row within the TTL are ``skipped``.
    """
    names = [ref.split(":", 1)[1] for ref in refs]
    job = store.get_historical_features(entity_df=entity_rows, features=refs)
    # Feast types it as a RetrievalJob; the Spark offline store's is a SparkRetrievalJob.
    joined = cast("SparkRetrievalJob", job).to_spark_df()
    # Cached: read twice (the skipped ids, then the scores), joined once.
    joined = joined.select(ENTITY_KEY, *names).cache()
    has_features = reduce(or_, [F.col(name).isNotNull() for name in names])
    skipped = sorted(row[0] for row in joined.where(~has_features).select(ENTITY_KEY).collect())
    broadcast = engine.spark.sparkContext.broadcast(model)
    schema = StructType([*joined.schema.fields, StructField(SCORE, DoubleType(), False)])
    scored = joined.where(has_features).mapInPandas(
        partial(_score_batches, broadcast, names), schema=schema
    )
    frame = utc_frame(scored).sort_values(ENTITY_KEY, kind="stable").reset_index(drop=True)
    broadcast.unpersist()
    joined.unpersist()
    if progress is not None:
        progress(1, 1)
    return frame[[ENTITY_KEY, *names]], frame[SCORE].to_numpy(), skipped
