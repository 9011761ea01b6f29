"""The validation rules, pure: frames in, a report out, no I/O.

Per-column rules (nulls, uniqueness of user_id, allowed values, ranges) are
pandera checks; the schema gate and the cross-row/cross-table rules are
vectorised pandas and Arrow. ``ingestion.validate`` runs them on files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc

from core import contract
from ingestion.ingest import REQUIRED_EVENT_COLUMNS

CLOCK_SKEW = pd.Timedelta(minutes=5)
MAX_EXAMPLES = 5
MAX_MESSAGE = 400  # a rule broken on many days keeps its first days' messages
MEASURE_EVENT_TYPES = {
    "watch_minutes": ("video_watch",),
    "quiz_score": ("quiz_attempt",),
    "amount": contract.PAYMENT_EVENT_TYPES,
}
DUPLICATE_KEY = ["user_id", "event_time", "event_type", "course_id"]
ALLOWED_PLANS = (*contract.PLANS, contract.UNKNOWN)

# Optional user columns are filled with 'unknown' on ingest, so null is never valid in raw.
USERS_SCHEMA = pa.DataFrameSchema(
    {
        "user_id": pa.Column(nullable=False, unique=True),
        "signup_time": pa.Column(nullable=False),
        "plan": pa.Column(nullable=False, checks=pa.Check.isin(ALLOWED_PLANS)),
        "country": pa.Column(nullable=False),
        "acquisition_channel": pa.Column(nullable=False),
    }
)
# event_id uniqueness is not here: pandera's check costs ~2.5 s on 5M ids, see _unique_event_id.
EVENTS_SCHEMA = pa.DataFrameSchema(
    {
        **{name: pa.Column(nullable=False) for name in REQUIRED_EVENT_COLUMNS},
        "event_type": pa.Column(nullable=False, checks=pa.Check.isin(contract.EVENT_TYPES)),
        "watch_minutes": pa.Column(
            nullable=True, checks=pa.Check.in_range(0, contract.MAX_WATCH_MINUTES)
        ),
        "quiz_score": pa.Column(
            nullable=True, checks=pa.Check.in_range(*contract.QUIZ_SCORE_RANGE)
        ),
        "amount": pa.Column(nullable=True, checks=pa.Check.gt(0)),
    }
)
# pandera reports failures by column and check; each column has at most one value check.
VALUE_RULES = {
    "plan": "plan_values",
    "event_type": "allowed_event_types",
    "watch_minutes": "watch_minutes_range",
    "quiz_score": "quiz_score_range",
    "amount": "amount_range",
}
PANDERA_TEXT = {
    "users_nulls": "null in a required users field (ingest fills optional ones with 'unknown')",
    "events_nulls": "null in a required events field",
    "unique_user_id": "user_id shared by several users rows",
    "plan_values": f"plan not one of {', '.join(ALLOWED_PLANS)}",
    "allowed_event_types": "event_type not in the contract's EVENT_TYPES",
    "watch_minutes_range": f"watch_minutes outside [0, {contract.MAX_WATCH_MINUTES:g}]",
    "quiz_score_range": "quiz_score outside [{:g}, {:g}]".format(*contract.QUIZ_SCORE_RANGE),
    "amount_range": "amount not > 0",
}


@dataclass
class RuleFailure:
    """One broken rule: how many rows break it and up to five of them (JSON-safe)."""

    rule: str
    count: int
    message: str
    examples: list[dict] = field(default_factory=list)


@dataclass
class ValidationReport:
    """Outcome of one validation run; ``stats`` describes the tables that were checked.

    ``failures`` are broken rules of severity error (any one fails the run); ``warnings``
    are broken rules a user relaxed to warn, and the repeats dropped on request.
    """

    passed: bool
    failures: list[RuleFailure]
    stats: dict
    checked_at: datetime
    warnings: list[RuleFailure] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form, as written to ``reports/validation/latest.json``."""
        return {**asdict(self), "checked_at": self.checked_at.isoformat()}


def _json_rows(frame: pd.DataFrame) -> list[dict]:
    """Up to five rows as plain JSON values (ISO timestamps, null for NaN)."""
    text = frame.head(MAX_EXAMPLES).to_json(orient="records", date_format="iso", date_unit="us")
    return json.loads(text)


def _iso(value: object) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).isoformat()


def _failure(
    rule: str, frame: pd.DataFrame, mask: npt.ArrayLike, message: str
) -> RuleFailure | None:
    """A RuleFailure for the rows under boolean ``mask`` (``{n}`` in message = count), or None."""
    count = int(np.count_nonzero(mask))
    if not count:
        return None
    return RuleFailure(rule, count, message.format(n=count), _json_rows(frame[mask]))


def _type_ok(values: pd.Series, kind: str) -> bool:
    """Whether a column holds the contract's Arrow type (strings: object, or either StringDtype)."""
    if kind == "string":
        if isinstance(values.dtype, pd.StringDtype):
            return True
        return values.dtype == object and pd.api.types.infer_dtype(values) in ("string", "empty")
    if kind == "double":
        return pd.api.types.is_float_dtype(values)
    # Any unit is fine (written as microseconds); the zone must be UTC.
    return isinstance(values.dtype, pd.DatetimeTZDtype) and str(values.dtype.tz) == "UTC"


def _schema_failure(table: str, frame: pd.DataFrame, columns: dict[str, str]) -> RuleFailure | None:
    """``<table>_schema``: contract columns missing or of the wrong type, one count per column.

    Done by hand, not by pandera's dtype check, which is exact: object,
    string[python] and string[pyarrow] are all a valid contract 'string'.
    """
    problems = [
        {"column": name, "expected": kind, "found": str(frame[name].dtype)}
        if name in frame
        else {"column": name, "expected": kind, "found": "missing"}
        for name, kind in columns.items()
        if name not in frame or not _type_ok(frame[name], kind)
    ]
    if not problems:
        return None
    text = ", ".join(f"{p['column']} is {p['found']}, expected {p['expected']}" for p in problems)
    return RuleFailure(f"{table}_schema", len(problems), f"{table}: {text}", problems)


def _pandera_failures(
    table: str, frame: pd.DataFrame, schema: pa.DataFrameSchema, bad: set[str]
) -> list[RuleFailure]:
    """Run a pandera schema lazily (all failures) and group its failure cases into rules.

    Columns in ``bad`` ("table.column") failed the schema gate and are not checked.
    """
    schema = schema.remove_columns([c for c in schema.columns if f"{table}.{c}" in bad])
    try:
        schema.validate(frame, lazy=True)
        return []
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    by_check = {"not_nullable": f"{table}_nulls", "field_uniqueness": "unique_user_id"}
    rules = cases["check"].map(by_check).fillna(cases["column"].map(VALUE_RULES))
    cases["rule"] = rules.fillna(f"{table}_schema")
    failures = []
    for rule, group in cases.groupby("rule", sort=True):
        rows = pd.Index(group["index"].dropna().unique())
        details = []
        for column, g in group.groupby("column"):
            values = ", ".join(map(repr, g["failure_case"].dropna().unique()[:3].tolist()))
            details.append(f"{column} in {len(g)} rows" + (f", e.g. {values}" if values else ""))
        message = f"{PANDERA_TEXT.get(rule, 'pandera check failed')}: {'; '.join(details)}"
        examples = _json_rows(frame.loc[rows[:MAX_EXAMPLES]])
        failures.append(RuleFailure(rule, len(rows), message, examples))
    return failures


@dataclass
class _Inputs:
    """One slice of events, the users, and lookups several rules share (computed once)."""

    users: pd.DataFrame
    events: pd.DataFrame
    now: pd.Timestamp

    @cached_property
    def user_row(self) -> np.ndarray:
        """Row in ``users`` of each event's user (first occurrence), -1 when unknown or null."""
        keys = pyarrow.array(self.users["user_id"], type=pyarrow.large_string())
        keys = keys.combine_chunks() if isinstance(keys, pyarrow.ChunkedArray) else keys
        ids = pyarrow.array(self.events["user_id"], type=pyarrow.large_string())
        rows = pc.index_in(ids, options=pc.SetLookupOptions(keys, skip_nulls=True))
        return pc.fill_null(rows, -1).to_numpy(zero_copy_only=False)


def _unique_event_id(t: _Inputs) -> RuleFailure | None:
    """Every row sharing an event_id counts (nulls are events_nulls' business).

    ``is_unique`` answers the usual case in ~0.8 s on 5M ids; only then are the
    repeats located, by code counts (``duplicated(keep=False)`` takes ~4 s).
    """
    if t.events["event_id"].is_unique:
        return None
    codes = pd.factorize(t.events["event_id"])[0] + 1  # 0 = null
    mask = (codes > 0) & (np.bincount(codes)[codes] > 1)
    return _failure("unique_event_id", t.events, mask, "{n} events rows share an event_id")


def _referential_integrity(t: _Inputs) -> RuleFailure | None:
    mask = (t.user_row < 0) & t.events["user_id"].notna().to_numpy()
    return _failure("referential_integrity", t.events, mask, "{n} events of users not in users")


def _event_before_signup(t: _Inputs) -> RuleFailure | None:
    signup = t.users["signup_time"].to_numpy(dtype="datetime64[us]")
    event_time = t.events["event_time"].to_numpy(dtype="datetime64[us]")
    known = t.user_row >= 0
    mask = known & (event_time < signup[np.where(known, t.user_row, 0)])
    return _failure("event_before_signup", t.events, mask, "{n} events before the user's signup")


def _measure_event_type(t: _Inputs) -> RuleFailure | None:
    """watch_minutes, quiz_score and amount are only set on their own event types."""
    wrong = {
        column: t.events[column].notna() & ~t.events["event_type"].isin(types)
        for column, types in MEASURE_EVENT_TYPES.items()
    }
    detail = ", ".join(f"{c} on {int(m.sum())}" for c, m in wrong.items() if m.any())
    mask = np.logical_or.reduce([m.to_numpy() for m in wrong.values()])
    message = f"measure set on another event type: {detail} events"
    return _failure("measure_event_type", t.events, mask, message)


def _repeat_candidates(events: pd.DataFrame, user_codes: np.ndarray) -> pd.DataFrame:
    """Complete rows whose duplicate key's hash is shared: a cheap superset of the repeats.

    ``user_codes`` is any integer code of ``user_id`` (equal ids, equal codes).
    """
    codes = [
        user_codes,
        events["event_time"].array.asi8,
        pd.factorize(events["event_type"])[0],
        pd.factorize(events["course_id"])[0],
    ]
    key = np.zeros(len(events), dtype=np.uint64)
    for column_codes in codes:
        key = key * np.uint64(0x100000001B3) ^ pd.util.hash_array(column_codes)
    complete = events[list(REQUIRED_EVENT_COLUMNS)].notna().all(axis=1)
    return events[complete & pd.Series(key, index=events.index).duplicated(keep=False)]


def _duplicate_events(t: _Inputs) -> RuleFailure | None:
    """Same user, time, type and course under different event_ids: all such rows count.

    A hash of the key finds candidate rows cheaply; only those are compared exactly.
    """
    ev = t.events
    # Unknown users share -1: more candidates, still compared exactly.
    candidates = _repeat_candidates(ev, t.user_row)
    ids = candidates.groupby(DUPLICATE_KEY, dropna=False)["event_id"].transform("nunique")
    mask = ev.index.isin(candidates.index[ids.to_numpy() > 1])
    return _failure("duplicate_events", ev, mask, "{n} events repeat another under a new id")


def drop_repeated_events(events: pd.DataFrame) -> tuple[pd.DataFrame, RuleFailure | None]:
    """``events`` without the rows that repeat another (same user, time, type and course),
    keeping the lowest ``event_id`` of each group; and a warning naming how many went.

    For exports whose timestamps are coarser than the events (two orders on one day).
    """
    events = events.reset_index(drop=True)
    candidates = _repeat_candidates(events, pd.factorize(events["user_id"])[0])
    if candidates.empty:
        return events, None
    first = candidates.sort_values("event_id", kind="stable").duplicated(DUPLICATE_KEY)
    drop = events.index.isin(first.index[first.to_numpy()])
    message = "dropped {n} repeated events: same user, time, type and course as another under a new id (kept the lowest event_id)"
    return events[~drop].reset_index(drop=True), _failure("duplicate_events", events, drop, message)


def _future_events(t: _Inputs) -> RuleFailure | None:
    """Event times past now + clock skew: a wrong time zone or clock upstream."""
    limit = t.now + CLOCK_SKEW
    late = t.events["event_time"] > limit
    message = f"{{n}} event_time after {limit.isoformat()}"
    failure = _failure("future_timestamp", t.events, late, message)
    if failure:
        failure.examples = [{"table": "events", **row} for row in failure.examples]
    return failure


def _future_signups(users: pd.DataFrame, now: pd.Timestamp) -> RuleFailure | None:
    """Signup times past now + clock skew (the users half of ``future_timestamp``)."""
    limit = now + CLOCK_SKEW
    late = users["signup_time"] > limit
    failure = _failure(
        "future_timestamp", users, late, f"{{n}} signup_time after {limit.isoformat()}"
    )
    if failure:
        failure.examples = [{"table": "users", **row} for row in failure.examples]
    return failure


def volume_failure(events: int, previous: int, factor: float) -> RuleFailure | None:
    """Event count within [prev/f, prev*f] of the last accepted run: catches half exports."""
    low, high = previous / factor, previous * factor
    if low <= events <= high:
        return None
    message = (
        f"{events} events; the last accepted run had {previous}: allowed {low:.0f}..{high:.0f}"
    )
    return RuleFailure("volume", 1, message, [{"events": events, "previous_events": previous}])


def freshness_failure(newest: object, now: pd.Timestamp, hours: float) -> RuleFailure | None:
    """Newest event at most ``hours`` old: a stale export must not pass as today's."""
    if not pd.isna(newest) and pd.Timestamp(newest) >= now - pd.Timedelta(hours=hours):
        return None
    message = (
        f"newest event {_iso(newest)} is more than {hours:g} h before {now.isoformat()} "
        "(CHURN_MAX_EVENT_AGE_HOURS=0 turns this gate off for a historical backfill)"
    )
    example = {"newest_event": _iso(newest), "now": now.isoformat(), "max_event_age_hours": hours}
    return RuleFailure("freshness", 1, message, [example])


# Rule → (check of one slice of events, the "table.column" inputs it needs: skipped for a
# slice when one failed the schema gate). Volume and freshness are the history's: see Gate.
EVENT_RULES: dict[str, tuple[Callable[[_Inputs], RuleFailure | None], tuple[str, ...]]] = {
    "unique_event_id": (_unique_event_id, ("events.event_id",)),
    "referential_integrity": (_referential_integrity, ("users.user_id", "events.user_id")),
    "event_before_signup": (
        _event_before_signup,
        ("users.user_id", "users.signup_time", "events.user_id", "events.event_time"),
    ),
    "measure_event_type": (
        _measure_event_type,
        tuple(f"events.{c}" for c in ("event_type", *MEASURE_EVENT_TYPES)),
    ),
    "duplicate_events": (
        _duplicate_events,
        tuple(f"events.{c}" for c in (*REQUIRED_EVENT_COLUMNS, "course_id")),
    ),
    "future_timestamp": (_future_events, ("events.event_time",)),
}


# Every rule a report can name.
RULES = (
    "users_schema", "events_schema", "users_nulls", "events_nulls", "unique_user_id",
    *VALUE_RULES.values(), *EVENT_RULES, "volume", "freshness",
)  # fmt: skip
# Rules whose breach leaves tables the next stages would read wrongly (missing columns or
# keys, users counted twice, events of nobody): always errors.
STRICT_RULES = frozenset(
    {"users_schema", "events_schema", "users_nulls", "events_nulls", "unique_user_id",
     "referential_integrity"}
)  # fmt: skip
SEVERITIES = ("error", "warn", "off")


def check_severities(severity: Mapping[str, str]) -> None:
    """Raise ValueError naming the first unknown rule, unknown severity or strict rule."""
    for rule, level in severity.items():
        if rule not in RULES:
            raise ValueError(
                f"CHURN_VALIDATION_SEVERITY: no rule {rule!r}; rules: {', '.join(RULES)}"
            )
        if level not in SEVERITIES:
            raise ValueError(
                f"CHURN_VALIDATION_SEVERITY: {rule}={level!r}, expected error|warn|off"
            )
        if rule in STRICT_RULES and level != "error":
            raise ValueError(
                f"CHURN_VALIDATION_SEVERITY: {rule} cannot be relaxed: the next stages "
                "cannot read tables that break it"
            )


def merge_failure(first: RuleFailure | None, more: RuleFailure) -> RuleFailure:
    """One failure of a rule found in several slices: counts summed, the first five examples,
    the messages joined (up to MAX_MESSAGE characters, then an ellipsis)."""
    if first is None:
        return RuleFailure(more.rule, more.count, more.message, list(more.examples))
    message = first.message
    if len(message) >= MAX_MESSAGE:
        message = message if message.endswith("…") else f"{message}; …"
    elif more.message != message:
        message = f"{message}; {more.message}"
    examples = (first.examples + more.examples)[:MAX_EXAMPLES]
    return RuleFailure(first.rule, first.count + more.count, message, examples)


@dataclass
class Gate:
    """One run of the rules over tables checked piece by piece: the users once, the events a
    slice (a day) at a time, then the history's numbers (volume, freshness). A rule broken
    in several slices is one failure (``merge_failure``); its severity decides at the end."""

    now: pd.Timestamp
    max_event_age_hours: float
    volume_factor: float
    severity: dict[str, str]
    found: dict[str, RuleFailure] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    users_bad: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(
        cls,
        *,
        now: datetime,
        max_event_age_hours: float,
        volume_factor: float,
        severity: Mapping[str, str] | None = None,
    ) -> Gate:
        """A gate with no results yet; ValueError when ``severity`` cannot hold (see
        ``check_severities``). ``now`` (naive means UTC) anchors freshness and future times."""
        severity = dict(severity or {})
        check_severities(severity)
        stamp = pd.Timestamp(now)
        now = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        gate = cls(now, max_event_age_hours, volume_factor, severity)
        gate.skipped = {
            r: "off (CHURN_VALIDATION_SEVERITY)" for r, v in severity.items() if v == "off"
        }
        if not max_event_age_hours:
            gate.skipped["freshness"] = "off (max_event_age_hours = 0)"
        return gate

    def add(self, failure: RuleFailure | None) -> None:
        """Record a broken rule (nothing for None or a rule turned off)."""
        if failure is None or self.severity.get(failure.rule) == "off":
            return
        self.found[failure.rule] = merge_failure(self.found.get(failure.rule), failure)

    @property
    def failed(self) -> bool:
        """Whether an error-level rule is broken so far (the run will fail)."""
        return any(
            self.severity.get(rule, "error") == "error" and rule not in self.skipped
            for rule in self.found
        )

    def _skip(self, rule: str, bad: set[str], needs: tuple[str, ...]) -> bool:
        """Whether ``rule`` is not run on this piece (off, or its inputs broke the schema)."""
        if self.severity.get(rule) == "off":
            return True
        if broken := sorted(bad.intersection(needs)):
            self.skipped.setdefault(rule, f"schema failure in {', '.join(broken)}")
            return True
        return False

    def check_users(self, users: pd.DataFrame) -> None:
        """The users table's own rules; its schema failures skip the rules needing the column."""
        schema = _schema_failure("users", users, contract.USER_COLUMNS)
        self.users_bad = {f"users.{p['column']}" for p in schema.examples} if schema else set()
        self.add(schema)
        for failure in _pandera_failures("users", users, USERS_SCHEMA, self.users_bad):
            self.add(failure)
        if not self._skip("future_timestamp", self.users_bad, ("users.signup_time",)):
            self.add(_future_signups(users, self.now))

    def check_events(self, users: pd.DataFrame, events: pd.DataFrame) -> bool:
        """Every events rule on one slice of events, against ``users``; False when the slice
        failed the schema gate on ``event_time`` (its times are unknown)."""
        schema = _schema_failure("events", events, contract.EVENT_COLUMNS)
        bad = self.users_bad | (
            {f"events.{p['column']}" for p in schema.examples} if schema else set()
        )
        self.add(schema)
        for failure in _pandera_failures("events", events, EVENTS_SCHEMA, bad):
            self.add(failure)
        t = _Inputs(users, events, self.now)
        for name, (check, needs) in EVENT_RULES.items():
            if not self._skip(name, bad, needs):
                self.add(check(t))
        return "events.event_time" not in bad

    def check_history(
        self, events: int, newest: object, previous_events: int | None, times_known: bool = True
    ) -> None:
        """Volume (``events`` against the last accepted run's count) and freshness (the
        ``newest`` event, None when there is none) over the whole history; ``times_known``
        False (a slice's times failed the schema gate) skips freshness."""
        if not previous_events:
            self.skipped["volume"] = "no previous accepted run"
        elif not self._skip("volume", set(), ()):
            self.add(volume_failure(events, previous_events, self.volume_factor))
        if not times_known:
            self.skipped.setdefault("freshness", "schema failure in events.event_time")
        elif "freshness" not in self.skipped:
            self.add(freshness_failure(newest, self.now, self.max_event_age_hours))

    def report(self, stats: dict) -> ValidationReport:
        """The verdict: errors fail the run, warnings let it pass; ``stats`` gains the skipped
        rules and the seconds spent."""
        found = [f for rule, f in self.found.items() if rule not in self.skipped]
        failures = [f for f in found if self.severity.get(f.rule, "error") == "error"]
        warnings = [f for f in found if self.severity.get(f.rule) == "warn"]
        stats = {**stats, "skipped": self.skipped,
                 "seconds": round(time.perf_counter() - self.started, 3)}  # fmt: skip
        return ValidationReport(not failures, failures, stats, self.now.to_pydatetime(), warnings)


def event_stats(events: pd.DataFrame, times_ok: bool) -> dict:
    """Rows, oldest and newest event and rows per type of a slice of events (None or empty
    where its times or types failed the schema gate)."""
    types_ok = "event_type" in events and _type_ok(events["event_type"], "string")
    times = events["event_time"] if times_ok else None
    return {
        "events": len(events),
        "newest_event": _iso(times.max()) if times is not None else None,
        "oldest_event": _iso(times.min()) if times is not None else None,
        "events_per_type": events["event_type"].value_counts().astype(int).to_dict()
        if types_ok
        else {},
    }


def validate_tables(
    users: pd.DataFrame,
    events: pd.DataFrame,
    *,
    now: datetime,
    max_event_age_hours: float,
    volume_factor: float,
    previous: dict | None,
    severity: Mapping[str, str] | None = None,
) -> ValidationReport:
    """Check raw users and events, as whole tables, against every rule; pure (no I/O).

    ``now`` (naive means UTC) anchors freshness and future timestamps; ``previous``
    is the last accepted manifest (None: volume skipped). A rule whose inputs
    failed the schema gate is skipped and named in ``stats["skipped"]``.
    ``severity`` relaxes rules (default error): a ``warn`` rule's breach is reported
    in ``warnings`` and the run passes; an ``off`` rule is skipped.
    """
    gate = Gate.start(
        now=now, max_event_age_hours=max_event_age_hours, volume_factor=volume_factor,
        severity=severity,
    )  # fmt: skip
    users, events = users.reset_index(drop=True), events.reset_index(drop=True)
    gate.check_users(users)
    times_ok = gate.check_events(users, events)
    stats = event_stats(events, times_ok)
    previous_events = (previous or {}).get("events")
    newest = events["event_time"].max() if times_ok else None
    gate.check_history(len(events), newest, previous_events, times_known=times_ok)
    return gate.report({"users": len(users), **stats, "previous_events": previous_events})
