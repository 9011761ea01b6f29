"""Online/offline skew: does the API serve the values the features table holds?

Training reads the offline table through Feast's point-in-time join; the API reads
Redis through its own feature source (``online_api.online_features.OnlineFeatures``:
its own read path and value decoder, not ``FeatureStore.get_online_features``). Both
should see the same newest row of a user, so any cell that differs is a bug in
materialization (a day not loaded, a stale key, a type lost on the way) or in the
API's decoding. The online side is read exactly as the API reads it: the plan the API
builds for the production model (its feature service and refs, plus the population
rule's features), fetched in batches by the same source.
A sample of users whose newest row is within the registered view TTL of the table's
newest timestamp (the row Feast's join picks there, ``training.dataset.newest_rows_sql``;
exactly those ``churn features materialize`` loads) is compared cell by cell.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from core import partitions
from core.atomic import write_json
from core.push import Sample
from core.settings import Settings
from core.sql_engine import connect, quote_path
from core.tables import MissingInputError
from core.timeline import day_of
from feature_repo.spec import ENTITY_KEY, TIMESTAMP_FIELD
from feature_repo.store import open_store, view_ttl
from online_api.online_features import OnlineFeatures, Plan
from online_api.service import model_plan
from served import registry
from served.card import load_card
from training.dataset import FEATURE_SERVICE, feature_refs, newest_rows_sql

if TYPE_CHECKING:
    from feast import FeatureStore

    from online_api.service import FeatureSource

TOLERANCE = 1e-9
WORST_FEATURES = 5
FETCH_USERS = 500  # users per fetch, capped by api_batch_max: no larger than an API read


@dataclass(frozen=True)
class FeatureSkew:
    """One feature's mismatching users, with the first of them as an example."""

    feature: str
    mismatches: int
    example_user: str
    offline_value: object
    online_value: object


@dataclass(frozen=True)
class SkewReport:
    checked_at: datetime
    newest_offline: datetime  # the newest event_timestamp in the features table
    feature_service: str
    population: int  # users with a feature row within the view TTL of newest_offline
    users_compared: int
    users_missing_online: int  # no feature at all online (also counted as mismatching)
    users_with_mismatch: int
    features_compared: int
    cells_compared: int
    cells_mismatched: int
    worst_features: list[FeatureSkew] = field(default_factory=list)
    missing_examples: list[str] = field(default_factory=list)

    @property
    def mismatch_ratio(self) -> float:
        return self.cells_mismatched / self.cells_compared if self.cells_compared else 0.0

    def to_dict(self) -> dict:
        return asdict(self) | {"mismatch_ratio": self.mismatch_ratio}


def sample_users(users: list[str], size: int, seed: int) -> list[str]:
    """``size`` of ``users`` drawn without replacement (everyone when fewer), sorted.

    The draw depends only on the sorted ids and the seed, so a re-run checks the same users.
    """
    if size < 1:
        raise ValueError(f"the skew sample must be at least 1 user, got {size}")
    ordered = sorted(users)
    if size >= len(ordered):
        return ordered
    picked = np.random.default_rng(seed).choice(len(ordered), size=size, replace=False)
    return [ordered[i] for i in sorted(picked)]


def _as_float(values: Iterable[object]) -> np.ndarray:
    return pd.array(list(values), dtype="Float64").to_numpy(dtype=float, na_value=np.nan)


def _as_text(values: Iterable[object]) -> np.ndarray:
    series = pd.Series(list(values), dtype=object)
    return series.where(series.notna(), None).to_numpy()


def cell_mismatches(offline: pd.DataFrame, online: pd.DataFrame) -> pd.DataFrame:
    """True where the online value differs from the offline one (same index and columns).

    Both missing (None/NaN) is equal; numbers are equal within 1e-9, absolute or
    relative to the larger; anything else (strings) must be identical. A column's
    kind is the offline column's dtype: the table is the reference.
    """
    out = {}
    for name in offline.columns:
        if pd.api.types.is_numeric_dtype(offline[name]):
            a, b = _as_float(offline[name]), _as_float(online[name])
            both_missing = np.isnan(a) & np.isnan(b)
            with np.errstate(invalid="ignore"):
                scale = np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
                close = (a == b) | (np.abs(a - b) <= TOLERANCE * scale)
            out[name] = ~(both_missing | close)
        else:
            a, b = _as_text(offline[name]), _as_text(online[name])
            out[name] = np.array([x != y for x, y in zip(a, b, strict=True)], dtype=bool)
    return pd.DataFrame(out, index=offline.index, columns=offline.columns)


def _plain(value: object) -> object:
    """A cell as a JSON-safe Python value (None for missing)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def summarize(
    offline: pd.DataFrame, online: pd.DataFrame
) -> tuple[pd.DataFrame, pd.Series, list[FeatureSkew]]:
    """Cell mismatches, users missing online, and the worst features with an example each."""
    online = online.reindex(index=offline.index, columns=offline.columns)
    mismatch = cell_mismatches(offline, online)
    missing = online.isna().all(axis=1)
    counts = mismatch.sum(axis=0)
    worst = []
    for name in (
        counts[counts > 0].sort_values(ascending=False, kind="stable").index[:WORST_FEATURES]
    ):
        user = mismatch.index[mismatch[name].to_numpy()][0]
        worst.append(
            FeatureSkew(
                feature=name,
                mismatches=int(counts[name]),
                example_user=str(user),
                offline_value=_plain(offline.at[user, name]),
                online_value=_plain(online.at[user, name]),
            )
        )
    return mismatch, missing, worst


def _read(files: list[str]) -> str:
    return f"read_parquet([{', '.join(quote_path(f) for f in files)}])"


@dataclass(frozen=True)
class _Recent:
    """The rows still served at ``newest`` (the table's newest stamp), in ``files``."""

    newest: datetime
    ttl: timedelta
    files: list[str]
    users: list[str]


def _newest_stamp(con: duckdb.DuckDBPyConnection, root: Path) -> datetime:
    """The newest ``event_timestamp`` of the features table at ``root``."""
    days = partitions.partition_days(root)
    if not days:
        raise MissingInputError(f"the features table {root} is empty: run `churn features build`")
    for day in reversed(days):  # the newest partition that has rows
        files = partitions.partition_files(root, [day])
        if files:
            row = con.execute(f"SELECT max({TIMESTAMP_FIELD}) FROM {_read(files)}").fetchone()
            assert row is not None  # an aggregate without GROUP BY returns one row
            newest = row[0]
            if newest is not None:
                return newest
    raise ValueError(f"the features table {root} has no rows: run `churn features build`")


def _recent(
    con: duckdb.DuckDBPyConnection, root: Path, newest: datetime, ttl: timedelta
) -> _Recent:
    """The files that may hold a row served at ``newest``, and the users they serve."""
    since = newest - ttl
    # The row of day D is stamped D+1 00:00 UTC: older partitions hold nothing since ``since``.
    days = [d for d in partitions.partition_days(root) if d >= day_of(since)]
    files = partitions.partition_files(root, days)
    users = con.execute(newest_rows_sql(_read(files), newest, ttl)).fetchall()
    return _Recent(newest, ttl, files, [row[0] for row in users])


def served_plan(
    settings: Settings, store: FeatureStore, source: FeatureSource
) -> tuple[str, list[str], Plan]:
    """The feature service, the refs and ``source``'s plan the API reads for the production
    model: its ``feature_refs`` plus ``POPULATION_FEATURES`` (``model_plan``, as the API
    resolves a model). Before any promotion, every ref of ``FEATURE_SERVICE`` (what the
    next model trains on); the refs returned include the population features.
    """
    version = registry.production(settings.models_dir)
    if version is None:
        service, refs = FEATURE_SERVICE, feature_refs(store, FEATURE_SERVICE)
    else:
        card = load_card(settings.models_dir, version)
        service, refs = card.feature_service, list(card.feature_refs)
    plan = model_plan(source, service, refs)
    read = [f"{view.name}:{name}" for view, names in plan.views for name in names]
    return service, list(dict.fromkeys([*refs, *read])), plan


def fetch_online(
    source: FeatureSource, plan: Plan, users: list[str], names: list[str], chunk: int
) -> pd.DataFrame:
    """``names`` as ``source`` serves them to the API, by user (object dtype, None where
    missing), read ``chunk`` users per fetch in one event loop; ``source`` is closed at
    the end (its async client belongs to that loop; it reopens on its next fetch).
    """

    async def read() -> list:
        try:
            rows = []
            for i in range(0, len(users), chunk):
                rows.extend(await source.fetch(users[i : i + chunk], plan))
            return rows
        finally:
            await source.aclose()

    rows = asyncio.run(read())
    records = [[None if row is None else row.values.get(n) for n in names] for row in rows]
    index = pd.Index(users, name=ENTITY_KEY)
    return pd.DataFrame(records, index=index, columns=names, dtype=object)


def skew_report(
    settings: Settings,
    sample: int | None = None,
    seed: int | None = None,
    source: FeatureSource | None = None,
) -> SkewReport:
    """Compare a sample of users' newest offline feature rows with what the API serves.

    ``source`` is the API's feature source (default: ``OnlineFeatures(settings)``, the
    one ``churn serve`` reads through); it is closed when the report is done. The
    features compared are those the API reads for the production model (``served_plan``).
    ``sample`` defaults to ``settings.skew_sample`` (a larger one checks everyone),
    ``seed`` to ``settings.seed``. The population is every user whose newest row is
    within the registered view TTL of the table's newest timestamp: older rows are
    served by neither Feast's join nor ``materialize``. No clock is read but for
    ``checked_at``: the TTL is not applied to the online rows (the offline side already is).
    """
    size = settings.skew_sample if sample is None else sample
    con = connect(settings)
    newest = _newest_stamp(con, settings.features_path)
    store = open_store(settings)
    recent = _recent(con, settings.features_path, newest, view_ttl(store))
    users = sample_users(recent.users, size, settings.seed if seed is None else seed)

    source = OnlineFeatures(settings) if source is None else source
    service, refs, plan = served_plan(settings, store, source)
    names = [ref.split(":", 1)[1] for ref in refs]
    described = con.execute(f"DESCRIBE SELECT * FROM {_read(recent.files)}").fetchall()
    absent = sorted(set(names) - {row[0] for row in described})
    if absent:
        raise ValueError(
            f"the features table {settings.features_path} lacks {absent}, which "
            f"{service} serves: rebuild the features or re-apply the feature repo"
        )
    con.register("sampled", pd.DataFrame({ENTITY_KEY: users}))
    offline = con.execute(
        newest_rows_sql(_read(recent.files), recent.newest, recent.ttl, names, "sampled")
    ).df()
    offline = offline.set_index(ENTITY_KEY)[names]
    chunk = min(FETCH_USERS, settings.api_batch_max)
    online = fetch_online(source, plan, list(offline.index), names, chunk)

    mismatch, missing, worst = summarize(offline, online)
    return SkewReport(
        checked_at=datetime.now(UTC),
        newest_offline=recent.newest,
        feature_service=service,
        population=len(recent.users),
        users_compared=len(offline),
        users_missing_online=int(missing.sum()),
        users_with_mismatch=int((mismatch.any(axis=1) | missing).sum()),
        features_compared=len(names),
        cells_compared=int(mismatch.size),
        cells_mismatched=int(mismatch.to_numpy().sum()),
        worst_features=worst,
        missing_examples=[str(u) for u in missing.index[missing.to_numpy()][:WORST_FEATURES]],
    )


def write_skew_report(report: SkewReport, settings: Settings) -> Path:
    """The report as JSON under ``monitoring/skew/``, one file per check (written atomically)."""
    name = f"skew_{report.checked_at.astimezone(UTC):%Y%m%dT%H%M%SZ}.json"
    return write_json(report.to_dict(), settings.monitoring_dir / "skew" / name)


def print_skew(report: SkewReport, console: Console) -> None:
    """The verdict in one line, then the worst features with an example each."""
    style = "green" if report.cells_mismatched == 0 else "red"
    console.print(
        f"[{style}]Online/offline skew: {report.cells_mismatched} of {report.cells_compared} "
        f"cells differ (ratio {report.mismatch_ratio:.6f})[/{style}]; "
        f"{report.users_compared} of {report.population} users compared "
        f"(features as of {report.newest_offline}), {report.users_with_mismatch} with a "
        f"mismatch, {report.users_missing_online} missing online"
    )
    if report.missing_examples:
        console.print(f"  missing online, e.g. {', '.join(report.missing_examples)}")
    if report.worst_features:
        table = Table("feature", "mismatches", "example user", "offline", "online")
        for f in report.worst_features:
            table.add_row(
                f.feature, str(f.mismatches), f.example_user, repr(f.offline_value),
                repr(f.online_value),
            )  # fmt: skip
        console.print(table)


def skew_samples(report: SkewReport) -> list[Sample]:
    """Gauges for the Pushgateway: the mismatch ratio and the users missing online."""
    return [
        Sample(
            "churn_online_offline_mismatch_ratio",
            report.mismatch_ratio,
            "Share of sampled feature cells whose online value differs from the offline one",
        ),
        Sample(
            "churn_online_offline_users_missing",
            float(report.users_missing_online),
            "Sampled users with no features at all in the online store",
        ),
    ]
