"""What a stage may hold in memory (``CHURN_MEMORY_BUDGET``), checked before it starts.

A stage whose inputs would not fit stops before it reads them, with one line naming the
setting to change: never an OOM kill halfway through a write. DuckDB's own stages spill to
disk beyond ``CHURN_DUCKDB_MEMORY_LIMIT`` (which the settings keep inside the budget); what
grows in Python's memory with the users is estimated by the stage that holds it
(``training.sampling``, ``batch.job``) from figures measured in docs/performance.md.
"""

from __future__ import annotations

from core.settings import Settings


class BudgetTooSmallError(ValueError):
    """The memory budget cannot hold what a stage needs."""


def check_fits(settings: Settings, need_bytes: float, what: str) -> None:
    """Raise ``BudgetTooSmallError`` when ``need_bytes`` (the stage's estimate for ``what``)
    exceed ``CHURN_MEMORY_BUDGET``."""
    budget = settings.memory_budget_bytes
    if need_bytes > budget:
        raise BudgetTooSmallError(
            f"{what} needs about {need_bytes / 1e9:.1f} GB, more than "
            f"CHURN_MEMORY_BUDGET={settings.memory_budget}: raise CHURN_MEMORY_BUDGET "
            "on a machine that has it, or run this stage on Spark (CHURN_ENGINE=spark)"
        )


# The DuckDB cap the full builds' pass sizes were measured under (the default, 3GB).
MEASURED_CAP_BYTES = 3_000_000_000


def passes(rows: int, rows_per_pass: int, cap_bytes: int) -> int:
    """How many passes keep each under ``cap_bytes``: ``rows_per_pass`` fitted one pass under
    ``MEASURED_CAP_BYTES``, and a pass holds rows in proportion to the cap (at least one)."""
    return max(1, -(-rows * MEASURED_CAP_BYTES // (rows_per_pass * cap_bytes)))
