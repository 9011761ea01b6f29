"""The flags several ``churn`` commands share, and how their values are read: a calendar
day (``--day``, and its deprecated spelling ``--as-of``), a batch's date, a UTC instant."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from typing import Annotated

import typer

# The world `make demo` runs: big enough that the gate's verdict rests on the model's
# signal, not on which few users lead the validation nights.
DEMO_USERS = 2000
DEMO_DAYS = 120

Day = Annotated[
    datetime | None,
    typer.Option(
        "--day",
        formats=["%Y-%m-%d"],
        help="A daily run for this UTC day instead of the whole history: the day, and the "
        "earlier days late events reached (features: every day from the oldest of them on, or "
        "the whole history when that is cheaper).",
    ),
]
# The old spelling of --day, from when --as-of named a day here but an instant elsewhere.
DeprecatedAsOfDay = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], hidden=True, help="Deprecated: use --day."),
]
BatchDate = Annotated[
    datetime | None,
    typer.Option(
        "--as-of",
        formats=["%Y-%m-%d"],
        help="The batch's T, named by its date (00:00 UTC that day; default: the newest).",
    ),
]


def as_day(value: datetime | None) -> date | None:
    """The calendar day of a parsed ``%Y-%m-%d`` flag, or None when not given."""
    return value.date() if value else None


def day_flag(day: datetime | None, old_as_of: datetime | None) -> date | None:
    """The calendar day of ``--day``, or of its deprecated spelling ``--as-of`` (warned)."""
    if old_as_of is None:
        return as_day(day)
    if day is not None:
        raise typer.BadParameter("--as-of is the deprecated spelling of --day: give only --day")
    print("warning: --as-of is deprecated for a calendar day; use --day", file=sys.stderr)
    return as_day(old_as_of)


def utc(value: datetime | None) -> datetime | None:
    """A parsed instant in UTC: a naive one is read as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
