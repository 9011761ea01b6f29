"""Which stored model versions saw given learners: the question an erasure must answer.

A version saw a learner in two ways:

- its fit or calibration rows: these are not stored, but a user is in the population at an
  as-of time T when active in ``lookback_window`` before T (``training.labels``), so a
  version whose fit and calibration as-of times run from T1 to T2 could have fitted on every
  user active on a day of [T1 - lookback, T2). Of a version fitted on a sample
  (``training.sampling``), the learner may not have been drawn: the answer says so.
- its stored validation rows (``validation.parquet`` beside the model), which name users:
  counted here, removed by the erasure.

A model keeps no rows: what it learnt of a learner is spread over its parameters. Forgetting
that means retraining without them (``churn train`` after ``churn forget``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd

from core import partitions
from core.scrub import count_rows
from core.settings import Settings
from core.sql_engine import connect, quote_path
from feature_repo.spec import ENTITY_KEY
from served import registry
from served.population import lookback_window
from training.train import VALIDATION_ROWS


@dataclass(frozen=True)
class Exposure:
    """What one version saw of the learners: whether its fit window covered an active day
    of theirs, their validation rows, and the sample it was fitted on (if one)."""

    version: str
    fit_window: bool
    validation_rows: int
    sample: str | None = None

    @property
    def saw(self) -> bool:
        return self.fit_window or self.validation_rows > 0

    def to_dict(self) -> dict[str, object]:
        return {"version": self.version, "fit_window": self.fit_window,
                "validation_rows": self.validation_rows, "sample": self.sample}  # fmt: skip


def fit_window(metadata: dict) -> tuple[date, date] | None:
    """[first, end): the days on which one active day put a user in the population of some
    fit or calibration as-of time of the version; None when its metadata does not say."""
    split, lookback = metadata.get("split") or {}, metadata.get("active_lookback_days")
    times = [pd.Timestamp(t).date() for part in ("fit", "calibration") for t in split.get(part, [])]
    if not times or not lookback:
        return None
    window = lookback_window(int(lookback))
    return window.days(min(times))[0], window.days(max(times))[1]


def sample_note(metadata: dict) -> str | None:
    """``fit on a sample of 2,000 of 3,400 users`` for a version fitted on a sample, else None."""
    sample = metadata.get("sample") or {}
    users, total = sample.get("users"), sample.get("users_total")
    if users is None or total is None or users >= total:
        return None
    return f"fit on a sample of {users:,} of {total:,} users"


def active_days(settings: Settings, user_ids: list[str]) -> list[date]:
    """Every day on which one of the users was active (``user_daily``), sorted."""
    if not partitions.partition_days(settings.user_daily_path):
        return []
    glob = quote_path(partitions.table_glob(settings.user_daily_path))
    con = connect(settings)
    try:
        rows = con.execute(
            f"SELECT DISTINCT CAST(date AS DATE) FROM read_parquet({glob}, hive_partitioning = "
            f"true) WHERE {ENTITY_KEY} IN (SELECT unnest($ids)) AND active > 0 ORDER BY 1",
            {"ids": user_ids},
        ).fetchall()
    finally:
        con.close()
    return [row[0] for row in rows]


def exposures(settings: Settings, user_ids: list[str]) -> list[Exposure]:
    """Every stored version that saw one of the users, oldest first (read before an erasure
    removes their rows: it counts them)."""
    days = active_days(settings, user_ids)
    ids = frozenset(user_ids)
    found = []
    for line in registry.list_versions(settings.models_dir):
        version = line["version"]
        try:
            metadata = registry.load_metadata(settings.models_dir, version)
        except registry.RegistryError:
            continue  # indexed, then removed by hand: nothing of it left to erase
        window = fit_window(metadata)
        covered = window is not None and any(window[0] <= d < window[1] for d in days)
        rows_file = settings.models_dir / version / VALIDATION_ROWS
        rows = count_rows(rows_file, ids, ENTITY_KEY) if rows_file.is_file() else 0
        exposure = Exposure(version, covered, rows, sample_note(metadata) if covered else None)
        if exposure.saw:
            found.append(exposure)
    return found
