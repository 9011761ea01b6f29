"""What a model is judged beside: simple references, the oracle, and drift reference bins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.settings import TRUTH_DAILY_FILE, TRUTH_USERS_FILE
from core.timeline import days_of
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from served.population import RECENCY


def recency_score(frame: pd.DataFrame) -> np.ndarray:
    """The one-feature rule: the longer since the last activity, the likelier to leave."""
    return frame[RECENCY].to_numpy(dtype=float)


def oracle_score(frame: pd.DataFrame, ground_truth_dir: Path) -> np.ndarray | None:
    """The generator's hidden truth as a score, or None for real data (no ground truth).

    At T the oracle knows each user's hidden daily churn hazard of the day before,
    and that a user who has already churned (silently, before T) will not return.
    """
    daily_path, users_path = (
        ground_truth_dir / TRUTH_DAILY_FILE,
        ground_truth_dir / TRUTH_USERS_FILE,
    )
    if not (daily_path.exists() and users_path.exists()):
        return None
    rows = frame[[ENTITY_KEY, TIMESTAMP_FIELD]].copy()
    rows[ENTITY_KEY] = rows[ENTITY_KEY].astype(str)
    stamps = pd.to_datetime(rows[TIMESTAMP_FIELD], utc=True)
    rows["day"] = days_of(stamps)
    # Only the days asked about: the whole hidden history of a large world does not fit.
    days = [d.date() for d in rows["day"].drop_duplicates()]
    daily = pd.read_parquet(
        daily_path, columns=[ENTITY_KEY, "day", "hazard"], filters=[("day", "in", days)]
    )
    daily["day"] = pd.to_datetime(daily["day"].astype(str))
    churn = pd.read_parquet(users_path, columns=[ENTITY_KEY, "churn_time"])
    daily[ENTITY_KEY] = daily[ENTITY_KEY].astype(str)
    churn[ENTITY_KEY] = churn[ENTITY_KEY].astype(str)
    joined = rows.merge(daily, on=[ENTITY_KEY, "day"], how="left").merge(
        churn, on=ENTITY_KEY, how="left"
    )
    gone = joined["churn_time"].notna() & (
        pd.to_datetime(joined["churn_time"], utc=True) < stamps.to_numpy()
    )
    return np.where(gone, 1.0, joined["hazard"].fillna(1.0).to_numpy())


def reference_bins(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str], bins: int = 10
) -> dict[str, dict]:
    """Per-feature distributions of the training rows, frozen for drift monitoring (PSI).

    Numeric: inner cut points at the deciles; the first and last bins are open
    ended, so later values outside the training range still land in a bin.
    Categorical: category shares. Both record the share of missing values.
    """
    out: dict[str, dict] = {}
    for name in numeric:
        values = frame[name].to_numpy(dtype=float)
        present = values[~np.isnan(values)]
        edges = (
            np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))
            if present.size
            else np.array([])
        )
        counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=edges.size + 1)
        out[name] = {
            "kind": "numeric",
            "edges": edges.tolist(),
            "proportions": (counts / max(present.size, 1)).tolist(),
            "missing": float(np.isnan(values).mean()),
        }
    for name in categorical:
        values = frame[name].astype("string")
        shares = values.dropna().value_counts(normalize=True)
        out[name] = {
            "kind": "categorical",
            "proportions": {str(k): float(v) for k, v in shares.items()},
            "missing": float(values.isna().mean()),
        }
    return out
