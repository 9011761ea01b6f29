"""Which users training fits on: whole users drawn by a stable hash, as many as the memory
budget holds.

Training memory grows with the fit rows, users × as-of days, so a large portal is fitted
on a sample of its users drawn before the point-in-time join: the label rows and the
entity frame Feast joins hold only them. A user is drawn whole (every as-of time of theirs
or none), by a BLAKE2b hash of the id keyed with the seed: the same users on every run and
machine for the same seed and size, unrelated to anything the user did, and a larger sample
holds every user of a smaller one. Validation is not sampled (``training.train``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.budget import BudgetTooSmallError
from core.settings import Settings

# The smallest sample worth fitting: the demo's world, the smallest on which the gate's
# verdict was shown to rest on the model's signal rather than on which users lead the
# validation nights (churn/cli/options.py DEMO_USERS). A budget that holds fewer stops the run.
MIN_TRAIN_USERS = 2_000
# Measured at 100,000 users × 120 days, 67 features (docs/performance.md, "Training in
# bounded memory"): peak RSS = 0.76 GB + 3,660 bytes per fit and calibration row, from
# fits of 356 k rows (2.06 GB) and 1.19 M rows (5.10 GB). 3,660 bytes are 70 cells × 8
# bytes × 6.5 copies (the joined frame, its fit/calibration parts, each model's float and
# imputed copies). The estimate below takes 8 copies (23 % over the slope) and 1.5 GB +
# a validation chunk for the 0.76 GB: it overestimates the measured peaks by 1.5-2.0×,
# the margin for what it does not model (the oracle, the plots, allocator slack).
BASE_BYTES = 1_500_000_000
ROW_COPIES = 8
ROW_EXTRA_CELLS = 3
# Validation rows are joined and scored in chunks of at most this many rows; of every
# validation row the run keeps its keys, label, recency and scores (about this many bytes).
VALIDATION_CHUNK_ROWS = 200_000
VALIDATION_ROW_BYTES = 300


@dataclass(frozen=True)
class UserSample:
    """The users a fit uses: ``users`` drawn of ``users_total``, ``rows`` of ``rows_total``
    fit and calibration label rows; ``max_users`` is the cap and where it came from."""

    users: pd.Index
    users_total: int
    rows: int
    rows_total: int
    max_users: int
    cap_from: str  # "CHURN_TRAIN_MAX_USERS" or "CHURN_MEMORY_BUDGET=…"

    @property
    def sampled(self) -> bool:
        return len(self.users) < self.users_total

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, for the model's metadata."""
        return {
            "users": len(self.users),
            "users_total": self.users_total,
            "rows": self.rows,
            "rows_total": self.rows_total,
            "max_users": self.max_users,
            "cap_from": self.cap_from,
            "method": "whole users, smallest BLAKE2b(seed, user_id)",
        }

    def describe(self) -> str:
        """``30,000 of 100,000 users, 371,204 of 1,237,346 fit rows``, for the console."""
        return (
            f"{len(self.users):,} of {self.users_total:,} users, "
            f"{self.rows:,} of {self.rows_total:,} fit rows"
        )


def user_hash(users: pd.Series | pd.Index, seed: int) -> np.ndarray:
    """Each user's place in [0, 2^64): BLAKE2b of the id, keyed with ``seed``.

    The same on every run, machine and Python (unlike ``hash``), whatever else the data
    holds: a user's draw depends on their own id only.
    """
    key = str(seed).encode()
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(u).encode(), digest_size=8, key=key).digest(), "big")
         for u in users),
        dtype=np.uint64,
        count=len(users),
    )  # fmt: skip


def draw_users(users: pd.Series | pd.Index, count: int, seed: int) -> pd.Index:
    """The ``count`` users with the smallest hashes (all when ``count`` covers them), sorted.

    Whole users by construction: the draw names users, never rows.
    """
    unique = pd.Index(pd.unique(np.asarray(users)))
    if count >= len(unique):
        return unique.sort_values()
    hashes = user_hash(unique, seed)
    chosen = np.argpartition(hashes, count - 1)[:count]
    return unique[chosen].sort_values()


def bytes_per_user(features: int, rows_per_user: float) -> float:
    """What one user's fit rows cost at the training peak, in bytes."""
    return rows_per_user * (features + ROW_EXTRA_CELLS) * 8 * ROW_COPIES


def budget_users(
    budget_bytes: int, features: int, rows_per_user: float, validation_rows: int = 0
) -> int:
    """How many users' fit rows ``budget_bytes`` holds, beside the process, one validation
    chunk and what is kept of the ``validation_rows`` (0 when it holds none)."""
    chunk = VALIDATION_CHUNK_ROWS * (features + ROW_EXTRA_CELLS) * 8 * ROW_COPIES
    free = budget_bytes - BASE_BYTES - chunk - validation_rows * VALIDATION_ROW_BYTES
    return max(0, math.floor(free / bytes_per_user(features, max(rows_per_user, 1.0))))


def max_users(
    settings: Settings, features: int, rows_per_user: float, validation_rows: int = 0
) -> tuple[int, str]:
    """(cap, where it comes from): ``train_max_users`` when set, else what the budget holds."""
    if settings.train_max_users:
        return settings.train_max_users, "CHURN_TRAIN_MAX_USERS"
    held = budget_users(settings.memory_budget_bytes, features, rows_per_user, validation_rows)
    source = f"CHURN_MEMORY_BUDGET={settings.memory_budget}"
    return held, source


def plan_sample(
    settings: Settings, rows_per_user: pd.Series, features: int, validation_rows: int = 0
) -> UserSample:
    """The users to fit on, from each population user's count of fit and calibration rows
    (and about how many validation rows will be scored beside them).

    Fails before any join when the budget holds fewer than ``MIN_TRAIN_USERS`` users and
    there are more than it holds: one line naming the two settings that change it.
    """
    total_users, total_rows = len(rows_per_user), int(rows_per_user.sum())
    mean_rows = total_rows / max(total_users, 1)
    cap, source = max_users(settings, features, mean_rows, validation_rows)
    if source != "CHURN_TRAIN_MAX_USERS" and cap < min(MIN_TRAIN_USERS, total_users):
        per_user = bytes_per_user(features, mean_rows) / 1e6
        raise BudgetTooSmallError(
            f"{source} holds the fit rows of {cap:,} users ({per_user:.2f} MB each: "
            f"{mean_rows:.1f} rows × {features} features), fewer than the {MIN_TRAIN_USERS:,} "
            "a useful fit needs: raise CHURN_MEMORY_BUDGET or set CHURN_TRAIN_MAX_USERS"
        )
    users = draw_users(rows_per_user.index, cap, settings.seed)
    rows = int(rows_per_user.loc[users].sum())
    return UserSample(users, total_users, rows, total_rows, cap, source)
