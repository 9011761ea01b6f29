"""The holdout experiment's arms on the high-risk list: who is contacted, who is kept back.

Each night's list splits into a ``contact`` arm, which the retention team acts on, and a
``holdout`` arm (``holdout_share`` of it), which nobody contacts; once the horizon has
passed, the arms' churn is compared (``monitor.uplift``). A user's arm is a hash of their
id and the assignment period (``holdout_period_days``), so they keep it through the
nights of a period and a rerun draws the same split. The hash ignores the score, so every
risk band splits in the holdout share in expectation, and the uplift is computed per band
and weighted by the bands (post-stratification): splitting each night's bands exactly
would make a user's arm depend on who else was listed that night, and move them between
arms from one night to the next.

The batch writes each night's listed users with their arm (``write_assignments``); the
uplift, the realized outcomes (which leave the contacted out) and training (which
leaves out the label windows outreach touched, ``training.outreach``) read them here,
and the API answers from the newest night's (``newest_assignments``, ``arms_by_user``)
whether a user is listed and only then their arm: a user on no list is not to be
contacted at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core import partitions
from core.atomic import write_parquet
from core.settings import Settings
from feature_repo.spec import ENTITY_KEY

Arm = Literal["contact", "holdout"]
CONTACT: Arm = "contact"
HOLDOUT: Arm = "holdout"
UNLISTED = "unlisted"  # predictions.parquet: scored, not on the night's list
ASSIGNMENTS_FILE = "assignments.parquet"
ASSIGNMENT_COLUMNS = [
    ENTITY_KEY,
    "arm",
    "risk_band",
    "churn_risk",
    "monthly_revenue",
    "model_version",
]
EPOCH = date(1970, 1, 1)  # periods count from here, so they do not depend on the first night
_SCALE = float(2**64)


def assignment_period(day: date, period_days: int) -> int:
    """The index of the period of ``period_days`` days (counted from 1970-01-01) holding ``day``."""
    return (day - EPOCH).days // period_days


def holdout_draw(user_id: str, period: int) -> float:
    """The user's uniform draw in [0, 1) for ``period``: BLAKE2b of ``period:user_id``.

    A hash, not a random generator: the same user and period give the same draw in every
    process, on every night and in the API, with nothing stored.
    """
    digest = hashlib.blake2b(f"{period}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / _SCALE


def assign_arms(user_ids: Iterable[str], day: date, share: float, period_days: int) -> np.ndarray:
    """``holdout`` for the users whose draw of ``day``'s period is below ``share``, else ``contact``."""
    period = assignment_period(day, period_days)
    draws = np.array([holdout_draw(uid, period) for uid in user_ids], dtype=float)
    return np.where(draws < share, HOLDOUT, CONTACT)


def write_assignments(settings: Settings, day: date, listed: pd.DataFrame) -> Path:
    """Store the night's list with its arms (``ASSIGNMENT_COLUMNS``) as the day's partition.

    Atomic: a rerun of the night replaces it whole.
    """
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in listed.columns]
    if missing:
        raise ValueError(f"the list lacks the columns {missing} the assignments keep")
    target = partitions.partition_dir(settings.outreach_dir, day) / ASSIGNMENTS_FILE
    return write_parquet(listed[ASSIGNMENT_COLUMNS].reset_index(drop=True), target)


def assignment_days(settings: Settings) -> list[date]:
    """The nights whose list was assigned to arms, oldest first."""
    return partitions.partition_days(settings.outreach_dir)


def read_assignments(settings: Settings, day: date) -> pd.DataFrame | None:
    """The night's listed users with their arm, or None for a night before the experiment."""
    path = partitions.partition_dir(settings.outreach_dir, day) / ASSIGNMENTS_FILE
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}: rerun that night's batch")
    return frame


def newest_assignments(settings: Settings) -> tuple[date, Path] | None:
    """The newest night that has a list, and its assignments file; None before the first.

    A night's directory exists a moment before ``write_assignments`` renames its file in
    (and stays empty if that write fails): such a night is passed over.
    """
    for day in reversed(assignment_days(settings)):
        path = partitions.partition_dir(settings.outreach_dir, day) / ASSIGNMENTS_FILE
        if path.is_file():
            return day, path
    return None


def arms_by_user(path: Path) -> dict[str, Arm]:
    """The listed users of one assignments file, each with their arm."""
    table = pq.read_table(path, columns=[ENTITY_KEY, "arm"])
    return dict(zip(table[ENTITY_KEY].to_pylist(), table["arm"].to_pylist(), strict=True))
