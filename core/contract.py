"""The data contract for raw users and events: column names, types, allowed values.

The validation gates (``ingestion.validate``), the demo generator, the ingest
step and the daily table all read these names from here.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

USER_COLUMNS: dict[str, str] = {
    "user_id": "string",
    "signup_time": "timestamp[us, tz=UTC]",
    "plan": "string",
    "country": "string",
    "acquisition_channel": "string",
}
OPTIONAL_USER_COLUMNS = ("plan", "country", "acquisition_channel")
UNKNOWN = "unknown"
PLANS = ("free", "paid")

EVENT_COLUMNS: dict[str, str] = {
    "event_id": "string",
    "user_id": "string",
    "event_time": "timestamp[us, tz=UTC]",
    "event_type": "string",
    "course_id": "string",
    "watch_minutes": "double",
    "quiz_score": "double",
    "amount": "double",
}
# Columns that may be absent from an input file (filled with nulls on ingest).
OPTIONAL_EVENT_COLUMNS = ("course_id", "watch_minutes", "quiz_score", "amount")

EVENT_TYPES = (
    "login",
    "video_watch",
    "quiz_attempt",
    "course_enroll",
    "payment_success",
    "payment_failed",
    "support_ticket",
)
# Learning activity: what "active" means for features and for the churn label.
# Payments are billed automatically and tickets are complaints, so neither counts.
ACTIVE_EVENT_TYPES = ("login", "video_watch", "quiz_attempt", "course_enroll")
PAYMENT_EVENT_TYPES = ("payment_success", "payment_failed")

QUIZ_SCORE_RANGE = (0.0, 100.0)
# A single video_watch event longer than this is a tracking bug, not a learner.
MAX_WATCH_MINUTES = 24 * 60.0


ARROW_TYPES = {
    "string": pa.string(),
    "double": pa.float64(),
    "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
}


def contract_schema(columns: dict[str, str]) -> pa.Schema:
    """Arrow schema of a contract table (``USER_COLUMNS`` or ``EVENT_COLUMNS``)."""
    return pa.schema([(name, ARROW_TYPES[kind]) for name, kind in columns.items()])


def to_contract_table(frame: pd.DataFrame, columns: dict[str, str]) -> pa.Table:
    """The contract columns of ``frame`` as an Arrow table with exactly the contract types.

    ``safe=False`` only matters for timestamps: nanoseconds are truncated to the
    contract's microseconds instead of failing the write.
    """
    table = pa.Table.from_pandas(frame[list(columns)], preserve_index=False)
    return table.cast(contract_schema(columns), safe=False)
