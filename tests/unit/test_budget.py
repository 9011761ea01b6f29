"""A stage that would not fit the memory budget stops before it starts, naming the setting."""

from __future__ import annotations

import pytest

from batch.job import BATCH_BASE_BYTES, batch_bytes
from core.budget import BudgetTooSmallError, check_fits
from core.settings import get_settings


def test_a_stage_over_the_budget_stops_naming_the_setting():
    settings = get_settings(memory_budget="2GB")
    check_fits(settings, 1.9e9, "scoring 10 users")  # fits: nothing happens
    with pytest.raises(BudgetTooSmallError) as error:
        check_fits(settings, batch_bytes(1_000_000), "scoring 1,000,000 users in process")
    message = str(error.value)
    assert message.startswith("scoring 1,000,000 users in process needs about 4.6 GB")
    assert "CHURN_MEMORY_BUDGET=2GB" in message and "\n" not in message


def test_the_batch_estimate_grows_with_the_users():
    assert batch_bytes(0) == BATCH_BASE_BYTES
    assert batch_bytes(2_000_000) - batch_bytes(1_000_000) == batch_bytes(1_000_000) - batch_bytes(
        0
    )
    assert batch_bytes(1_000_000) < get_settings().memory_budget_bytes  # 1 M fits the default
