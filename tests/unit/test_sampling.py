"""The training sample: whole users by a stable hash, sized by the memory budget."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from core.budget import BudgetTooSmallError
from core.settings import Settings, parse_bytes
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from training.labels import LABEL
from training.sampling import (
    BASE_BYTES,
    MIN_TRAIN_USERS,
    ROW_COPIES,
    VALIDATION_CHUNK_ROWS,
    budget_users,
    draw_users,
    plan_sample,
    user_hash,
)
from training.train import training_labels

USERS = pd.Index([f"u{i:06d}" for i in range(5000)])
T0 = pd.Timestamp("2026-03-01", tz="UTC")


def test_user_hash_is_blake2b_of_the_id_keyed_with_the_seed() -> None:
    digest = hashlib.blake2b(b"u000007", digest_size=8, key=b"42").digest()
    assert user_hash(pd.Index(["u000007"]), seed=42)[0] == int.from_bytes(digest, "big")
    assert user_hash(pd.Index(["u000007"]), seed=43)[0] != user_hash(pd.Index(["u000007"]), 42)[0]


def test_draw_is_stable_nested_and_independent_of_order() -> None:
    first = draw_users(USERS, 500, seed=42)
    assert len(first) == 500 and first.is_unique
    assert first.equals(draw_users(USERS[::-1], 500, seed=42))  # per id, not per position
    assert first.equals(draw_users(pd.Index(np.repeat(USERS, 3)), 500, seed=42))  # ids, not rows
    assert set(draw_users(USERS, 200, seed=42)) < set(first)  # a larger sample holds a smaller
    assert not first.equals(draw_users(USERS, 500, seed=7))
    assert draw_users(USERS, 6000, seed=42).equals(USERS)  # a cap above the users: all of them


def _labels(users: int, times: int) -> pd.DataFrame:
    """Every user at every one of ``times`` daily as-of times, every other row churned."""
    ids = [f"u{i:06d}" for i in range(users)]
    stamps = [T0 + timedelta(days=d) for d in range(times)]
    index = pd.MultiIndex.from_product([stamps, ids], names=[TIMESTAMP_FIELD, ENTITY_KEY])
    frame = index.to_frame(index=False)
    frame[LABEL] = np.arange(len(frame)) % 2
    return frame


def test_training_labels_sample_whole_users_for_the_fit_and_validate_everyone() -> None:
    # 60 times: 7 validation, a 30-day embargo, 4 calibration, 20 fit.
    settings = Settings(train_max_users=300)
    labels = _labels(users=3000, times=60)
    chosen = training_labels(settings, features=67, labels=labels)
    assert len(chosen.split.fit) == 20 and len(chosen.split.validation) == 7
    per_user = chosen.fit.groupby(ENTITY_KEY)[TIMESTAMP_FIELD].nunique()
    assert len(per_user) == 300
    assert (per_user == 24).all()  # whole users: every fit and calibration time of each
    assert set(per_user.index) == set(chosen.sample.users)
    assert chosen.validation[ENTITY_KEY].nunique() == 3000  # validation: every user
    assert len(chosen.validation) == 3000 * 7
    sample = chosen.sample
    assert (sample.users_total, sample.rows, sample.rows_total) == (3000, 300 * 24, 3000 * 24)
    assert sample.describe() == "300 of 3,000 users, 7,200 of 72,000 fit rows"
    assert sample.to_dict()["users"] == 300 and sample.to_dict()["rows"] == 7200
    again = training_labels(settings, features=67, labels=labels.sample(frac=1, random_state=1))
    assert set(again.fit[ENTITY_KEY]) == set(chosen.fit[ENTITY_KEY])  # the same users each run


def test_parse_bytes_reads_the_duckdb_sizes() -> None:
    assert parse_bytes("6GB") == 6_000_000_000
    assert parse_bytes("1.5 GiB") == 1_610_612_736
    assert parse_bytes("512MB") == 512_000_000
    assert Settings(memory_budget="2GiB").memory_budget_bytes == 2 * 1024**3
    with pytest.raises(ValueError, match="memory_budget"):
        Settings(memory_budget="6 gigs")


def test_budget_users_is_what_is_left_after_the_process_and_a_chunk() -> None:
    features, rows_per_user = 67, 20.0
    row = (features + 3) * 8 * ROW_COPIES
    budget = BASE_BYTES + VALIDATION_CHUNK_ROWS * row + 1000 * rows_per_user * row
    assert budget_users(budget, features, rows_per_user) == 1000
    assert budget_users(BASE_BYTES, features, rows_per_user) == 0


@pytest.mark.parametrize(("budget", "more"), [("4GB", "8GB"), ("8GB", "16GB")])
def test_the_default_cap_grows_with_the_budget(budget: str, more: str) -> None:
    counts = pd.Series(20, index=USERS[:200]).rename_axis(ENTITY_KEY)
    small = plan_sample(Settings(memory_budget=budget), counts, features=67).max_users
    large = plan_sample(Settings(memory_budget=more), counts, features=67).max_users
    assert MIN_TRAIN_USERS < small < large
    free = [parse_bytes(b) - BASE_BYTES - VALIDATION_CHUNK_ROWS * 70 * 8 * ROW_COPIES
            for b in (budget, more)]  # fmt: skip
    assert large / small == pytest.approx(free[1] / free[0], rel=1e-3)
    # Fewer rows per user (a shorter history): more users in the same budget.
    shorter = pd.Series(10, index=USERS[:200]).rename_axis(ENTITY_KEY)
    assert plan_sample(Settings(memory_budget=budget), shorter, features=67).max_users > small


def test_a_budget_too_small_stops_before_the_join_naming_the_settings() -> None:
    counts = pd.Series(60, index=USERS).rename_axis(ENTITY_KEY)
    with pytest.raises(BudgetTooSmallError) as error:
        plan_sample(Settings(memory_budget="2.5GB"), counts, features=67)
    message = str(error.value)
    assert "\n" not in message
    assert "CHURN_MEMORY_BUDGET=2.5GB holds the fit rows of" in message
    assert "raise CHURN_MEMORY_BUDGET or set CHURN_TRAIN_MAX_USERS" in message
    # Forced, the cap is the operator's: no budget check.
    forced = plan_sample(Settings(memory_budget="2.5GB", train_max_users=100), counts, 67)
    assert len(forced.users) == 100 and forced.cap_from == "CHURN_TRAIN_MAX_USERS"
    # A portal smaller than the minimum fits whole if the budget holds it.
    few = pd.Series(60, index=USERS[:50]).rename_axis(ENTITY_KEY)
    assert not plan_sample(Settings(memory_budget="3GB"), few, features=67).sampled
