"""Demo worlds (``ingestion.demo_world``) as raw tables and hidden truth: written a day at a
time (``write_demo_world``: memory does not grow with the world, the CLI's path), or whole in
memory for small worlds (``generate_demo_data``, ``write_demo_data``: tests and the demo).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.atomic import atomic_path, write_parquet
from core.contract import EVENT_COLUMNS, USER_COLUMNS, contract_schema, to_contract_table
from core.settings import Settings
from ingestion import raw_store
from ingestion.demo_world import (
    BLOCK_USERS,
    DemoWorld,
    Outreach,
    Progress,
    WorldDay,
    user_id_width,
)
from ingestion.simulate import CONCEPT_HAZARD_FACTOR, COURSE_PRICES, COURSES, SCENARIOS, Scenario

__all__ = [
    "BLOCK_USERS",
    "CONCEPT_HAZARD_FACTOR",
    "COURSES",
    "COURSE_PRICES",
    "SCENARIOS",
    "DemoWorld",
    "GeneratedData",
    "Outreach",
    "Scenario",
    "WorldDay",
    "WrittenWorld",
    "generate_demo_data",
    "user_id_width",
    "write_demo_data",
    "write_demo_world",
]


@dataclass(frozen=True)
class GeneratedData:
    """Raw tables per the contract plus the hidden truth behind them.

    ``truth_saves`` (``user_id, day``): the days outreach kept a user who would have left
    that day without it; the user would have been active that day all the same (a day's
    events are drawn before its churn), and gone after it.
    """

    users: pd.DataFrame
    events: pd.DataFrame
    truth_users: pd.DataFrame
    truth_daily: pd.DataFrame
    truth_saves: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"user_id": [], "day": []}, dtype=object)
    )


def generate_demo_data(
    n_users: int = 2000,
    days: int = 120,
    seed: int = 42,
    start: date | None = None,
    scenario: Scenario = "baseline",
    drift_day: int | None = None,
    progress: Progress | None = None,
    outreach: Outreach | None = None,
    block_users: int = BLOCK_USERS,
) -> GeneratedData:
    """The whole world of ``DemoWorld`` (same arguments) in memory, for small worlds (tests,
    the demo): about 2.5 GB per 100,000 users × 120 days. ``write_demo_world`` streams."""
    world = DemoWorld(n_users, days, seed, start, scenario, drift_day, outreach, block_users)
    events, daily = [], []
    for day in world.simulate(progress):
        events.append(day.events)
        daily.append(day.truth_daily)
    data = GeneratedData(
        users=_to_pandas(world.users()),
        events=_to_pandas(pa.concat_tables(events)),
        truth_users=_to_pandas(world.truth_users()),
        truth_daily=_to_pandas(pa.concat_tables(daily)),
    )
    return data if outreach is None else replace(data, truth_saves=world.truth_saves())


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Strings as ``string[pyarrow]`` and dates as Arrow dates: no Python object per cell."""
    mapping = {
        pa.string(): pd.StringDtype("pyarrow"),
        pa.large_string(): pd.StringDtype("pyarrow"),
        pa.date32(): pd.ArrowDtype(pa.date32()),
    }
    return table.to_pandas(types_mapper=mapping.get)


def contract_events(events: pa.Table) -> pa.Table:
    """A day's simulated events in the contract's types: NaN values are missing ones (null),
    as ``to_contract_table`` makes them from a frame."""
    columns = {
        name: pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
        if pa.types.is_floating(col.type)
        else col
        for name, col in zip(events.column_names, events.columns, strict=True)
    }
    return pa.table(columns).cast(contract_schema(EVENT_COLUMNS))


def contract_users(world: DemoWorld) -> pa.Table:
    """The world's users table in the contract's types."""
    return to_contract_table(_to_pandas(world.users()), USER_COLUMNS)


def write_demo_data(data: GeneratedData, settings: Settings) -> dict[str, Path]:
    """Raw users and events become this world's (``ingestion.raw_store``); the ground truth
    is written atomically beside them. Returns {name: path}."""
    users = to_contract_table(data.users, USER_COLUMNS)
    raw_store.replace_all(settings, users, [to_contract_table(data.events, EVENT_COLUMNS)])
    return {
        "users": raw_store.users_path(settings),
        "events": raw_store.events_root(settings),
        "truth_daily": write_parquet(data.truth_daily, settings.truth_daily_path),
        **_write_truth(settings, data.truth_users, data.truth_saves),
    }


def _write_truth(
    settings: Settings, truth_users: pd.DataFrame, saves: pd.DataFrame
) -> dict[str, Path]:
    """The hidden users table, and the outreach saves when there are any (a stale saves
    file, of an earlier world, is removed: it would credit outreach this world never had)."""
    written = {"truth_users": write_parquet(truth_users, settings.truth_users_path)}
    saves_path = settings.truth_saves_path
    if saves.empty:
        saves_path.unlink(missing_ok=True)
    else:
        written["truth_saves"] = write_parquet(saves, saves_path)
    return written


@dataclass(frozen=True)
class WrittenWorld:
    """What ``write_demo_world`` wrote: counts, and {name: path} as ``write_demo_data``."""

    users: int
    events: int
    paths: dict[str, Path]


def write_demo_world(
    world: DemoWorld, settings: Settings, progress: Progress | None = None
) -> WrittenWorld:
    """Simulate ``world`` straight into the raw store and the ground truth, a day at a time.

    Memory is the users' state and one day's rows, whatever the size of the world. The
    files are those ``write_demo_data`` writes for the same world, with the same guarantee:
    each day's events are staged as simulated, and the raw tables change only once every day
    is (a failure before leaves them as they were); the truth's daily table is appended to
    a temporary file renamed into place at the end.
    """
    daily_path = settings.truth_daily_path
    schema = _truth_daily_schema()
    with (
        raw_store.staging(settings) as staged,
        atomic_path(daily_path) as daily_tmp,
        pq.ParquetWriter(daily_tmp, schema) as daily,
    ):
        for day in world.simulate(progress):
            staged.add(contract_events(day.events))
            daily.write_table(day.truth_daily.cast(schema))
        raw_store.replace_with(settings, contract_users(world), staged)
    saves = world.truth_saves() if world.outreach else pd.DataFrame()
    paths = {
        "users": raw_store.users_path(settings),
        "events": raw_store.events_root(settings),
        "truth_daily": daily_path,
        **_write_truth(settings, _to_pandas(world.truth_users()), saves),
    }
    return WrittenWorld(world.n_users, world.n_events, paths)


def _truth_daily_schema() -> pa.Schema:
    """The truth's daily table as ``write_parquet`` stores the in-memory frame (with the
    pandas metadata that reads it back as the same frame)."""
    empty = pa.table(
        {
            "user_id": pa.array([], pa.large_string()),
            "day": pa.array([], pa.date32()),
            "engagement": pa.array([], pa.float64()),
            "hazard": pa.array([], pa.float64()),
        }
    )
    return pa.Schema.from_pandas(_to_pandas(empty), preserve_index=False)


def source_event_days(world: DemoWorld, progress: Progress | None = None) -> Iterator[pa.Table]:
    """The world's events a day at a time in the contract's types (to seed a source)."""
    for day in world.simulate(progress):
        yield contract_events(day.events)
