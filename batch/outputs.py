"""Where a nightly batch's outputs live, and how the monitoring jobs find and read them.

Layout::

    predictions_dir/as_of=YYYY-MM-DD/   the batch of day D, scored as of T = D 00:00 UTC
        predictions.parquet             PREDICTION_COLUMNS, riskiest first
        features.parquet                the features exactly as scored
        high_risk.csv                   the retention team's list
        run.json                        what the run scored and wrote

``batch.job`` writes a batch directory whole (staged outside ``predictions_dir``, then
renamed in); drift and realized outcomes list and read them through this module only.
"""

from __future__ import annotations

import logging
import re
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from feature_repo.spec import ENTITY_KEY

log = logging.getLogger(__name__)

BATCH_PREFIX = "as_of="
PREDICTIONS_FILE = "predictions.parquet"
FEATURES_FILE = "features.parquet"
HIGH_RISK_FILE = "high_risk.csv"
RUN_FILE = "run.json"
PREDICTION_COLUMNS = [
    ENTITY_KEY,
    "churn_risk",
    "risk_band",
    "rank",
    "model_version",
    "features_as_of",
    "arm",  # contact or holdout on the night's list, unlisted otherwise (served.arms)
]
# What monitoring reads of the predictions: who, how risky, scored by which model.
SCORED_COLUMNS = [ENTITY_KEY, "churn_risk", "model_version"]
_BATCH_NAME = re.compile(rf"^{BATCH_PREFIX}(\d{{4}}-\d{{2}}-\d{{2}})$")


def batch_dir(predictions_dir: Path, day: date) -> Path:
    """The directory of the batch of ``day``: ``predictions_dir/as_of=YYYY-MM-DD``."""
    return predictions_dir / f"{BATCH_PREFIX}{day:%Y-%m-%d}"


def batch_dates(predictions_dir: Path) -> list[date]:
    """Days of the batch directories in ``predictions_dir``, oldest first.

    Hidden names (the batch job's staging and old directories) and names without the
    ``as_of=`` prefix are not batches. A name with the prefix that is not
    ``as_of=YYYY-MM-DD`` of a real date (``as_of=2026-13-45``, ``as_of=2026-11-20.bak``)
    is skipped with a warning that names it, not raised on: the batch job only ever
    renames in valid names, so such a directory is something a person put there (a
    copy, a backup), not a batch of ours whose absence would bias a metric, and raising
    would stop drift, outcomes and the retraining loop every night until it is removed.
    It never counts as a batch, and each listing says so.
    """
    if not predictions_dir.is_dir():
        return []
    days = []
    for path in predictions_dir.iterdir():
        if not path.name.startswith(BATCH_PREFIX):
            continue
        day = _batch_day(path)
        if day is None:
            log.warning(
                "%s is not a batch directory (as_of=YYYY-MM-DD, a real date): skipped", path
            )
        else:
            days.append(day)
    return sorted(days)


def read_predictions(predictions_dir: Path, day: date) -> pd.DataFrame:
    """The batch's ``SCORED_COLUMNS``, checked: rows, unique ids, risks in [0, 1].

    FileNotFoundError for a missing file, ValueError naming the file for anything else.
    """
    path = batch_dir(predictions_dir, day) / PREDICTIONS_FILE
    frame = read_batch_file(path, SCORED_COLUMNS)
    if frame.empty:
        raise ValueError(f"{path} has no rows")
    risk = pd.to_numeric(frame["churn_risk"], errors="coerce")
    if risk.isna().any() or (risk < 0).any() or (risk > 1).any():
        raise ValueError(f"{path}: churn_risk must be a probability in [0, 1] on every row")
    if frame[ENTITY_KEY].isna().any() or frame[ENTITY_KEY].duplicated().any():
        raise ValueError(f"{path}: {ENTITY_KEY} must be present and unique")
    return frame.assign(churn_risk=risk.astype(float))


def read_batch_file(path: Path, columns: list[str]) -> pd.DataFrame:
    """``columns`` of one Parquet file of a batch; clear errors for a missing or broken file."""
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


def _batch_day(path: Path) -> date | None:
    """The day a batch directory is of, or None when its name or kind is not a batch's."""
    match = _BATCH_NAME.match(path.name)
    if match is None or not path.is_dir():
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:  # as_of=2026-13-45
        return None
