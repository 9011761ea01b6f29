"""``churn status``: the system's state on one screen, and an exit code a probe can act on.

Three steps, each testable alone: ``gather_status`` reads the state (cheaply: partition
names, Parquet footers, small JSON files, a bounded Redis sample; never a whole table),
``problems`` judges it (pure: the state, an injected ``now`` and the settings) and
``print_status`` / ``status_json`` show it.

Exit codes (``EXIT_CODES``), clear of the other commands' 1 (error), 2 (bad configuration
or usage), 3 (gate refused, skew), 10 and 20 (drift): 0 all well; 30 warnings only
(something to look at); 40 something is wrong (a probe or a cron check pages on it).

Thresholds (module constants, not settings):

- ``NIGHT_MAX_AGE``, 36 h: the newest batch (scored as of T, 00:00 UTC) older than this
  means the night after it did not complete (the next is due a day after T, at
  CHURN_NIGHTLY_CRON, so 36 h leaves it half a day to run); an error.
- ``LATE_MAX_WAIT``, 36 h: late days pending a rebuild whose list has not changed for
  this long have missed a night; an error.
- ``INGEST_MAX_AGE``, 36 h: CHURN_SOURCE not read for this long; a warning.
- CHURN_MAX_MODEL_AGE_DAYS: a production model older than the retraining loop allows;
  a warning.

The last night: ``churn nightly`` records each night, its steps and their exit codes, in
the nights' history (``Settings.nights_path``). A night run step by step (or the demo)
leaves no record: each step is then judged by the output it leaves for the night's day D
(validated events, ``user_daily`` and features of D, the batch as of D+1, the drift
history's line for it); the other steps show "no record".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from batch.outputs import RUN_FILE, batch_dates, batch_dir
from churn.stages import night
from core import partitions
from core.history import read_records
from core.redaction import redact
from core.settings import Settings
from core.timeline import day_of, stamp_of, start_of
from ingestion import raw_store
from served import registry
from served.card import load_card

Severity = Literal["warn", "error"]
EXIT_CODES = {"ok": 0, "warn": 30, "error": 40}
NIGHT_MAX_AGE = timedelta(hours=36)
LATE_MAX_WAIT = timedelta(hours=36)
INGEST_MAX_AGE = timedelta(hours=36)
REDIS_TIMEOUT_SECONDS = 2.0
# Keys SCAN looks at to count the project's: all of them in a database this small, else
# an estimate from this sample (SCAN walks the hash table, so its first keys are a fair
# sample); a few round trips whatever the size.
REDIS_KEY_SAMPLE = 10_000
# Errors reading one part of the state: shown as that part's error, never a traceback.
READ_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError)

RAW, VALIDATED, DAILY, FEATURES, BATCHES = (
    "raw events",
    "validated events",
    "user_daily",
    "features",
    "batches",
)


@dataclass(frozen=True)
class Layer:
    """One data layer: its first and last day, how many days, rows (from the footers)."""

    name: str
    first: date | None = None
    last: date | None = None
    days: int = 0
    rows: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Step:
    """One step of the night: ``done``, ``missing``, ``failed`` or ``no record``."""

    name: str
    state: str
    detail: str = ""


@dataclass(frozen=True)
class NightState:
    """The newest night (``day``, scored as of ``day`` + 1) and its steps: from the nights'
    history when ``churn nightly`` ran it, else from the outputs on disk; the newest batch
    (the last night that scored); the step that stopped the recorded night, if one did."""

    day: date | None = None
    steps: tuple[Step, ...] = ()
    last_batch: date | None = None
    stopped: dict[str, str] | None = None  # step, exit_code, day of the recorded night
    error: str | None = None


@dataclass(frozen=True)
class ModelState:
    version: str | None = None
    created_at: datetime | None = None
    promoted_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class RedisState:
    """The online store: reachable, DBSIZE (every project's keys in this database) and the
    keys ending in the project's name among ``sampled`` scanned (exact when all were)."""

    url: str
    reachable: bool = False
    db_keys: int | None = None
    project_keys: int | None = None
    sampled: int = 0
    error: str | None = None

    @property
    def exact(self) -> bool:
        return self.db_keys is not None and self.sampled >= self.db_keys


@dataclass(frozen=True)
class SourceState:
    """CHURN_SOURCE: its name (no password), the high-water mark (a landing folder's: the
    newest file taken), when an ingest last recorded it."""

    name: str | None = None
    mark: datetime | None = None
    updated_at: datetime | None = None
    detail: str = ""
    error: str | None = None


@dataclass(frozen=True)
class LateDays:
    """Days whose late events await a rebuild; the list has not changed since
    ``unchanged_since``, so the oldest has waited at least that long."""

    days: tuple[date, ...] = ()
    unchanged_since: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class Status:
    checked_at: datetime
    project: str
    layers: tuple[Layer, ...]
    night: NightState
    model: ModelState
    redis: RedisState
    source: SourceState
    late: LateDays

    def layer(self, name: str) -> Layer:
        return next(layer for layer in self.layers if layer.name == name)


@dataclass(frozen=True)
class Problem:
    severity: Severity
    area: str
    message: str  # one line, with the command that fixes it


def gather_status(settings: Settings, now: datetime) -> Status:
    """The state as found at ``now``; a part that cannot be read carries its error."""
    layers = _layers(settings)
    return Status(
        checked_at=now,
        project=settings.feast_project,
        layers=layers,
        night=_guarded(lambda: _night(settings, layers), NightState),
        model=_guarded(lambda: _model(settings), ModelState),
        redis=_redis(settings),
        source=_guarded(lambda: _source(settings), SourceState),
        late=_guarded(lambda: _late(settings), LateDays),
    )


def _guarded(read: Any, empty: Any) -> Any:
    try:
        return read()
    except READ_ERRORS as exc:
        return empty(error=redact(f"{type(exc).__name__}: {exc}"))


def _layers(settings: Settings) -> tuple[Layer, ...]:
    """Each layer's days from its partition names, rows from the Parquet footers."""
    raw = raw_store.events_root(settings)
    return (
        _layer(RAW, raw, skip=raw_store.NO_TIME_DAY),  # events without a time, for the gates
        _layer(VALIDATED, settings.validated_events_path),
        _layer(DAILY, settings.user_daily_path),
        _layer(FEATURES, settings.features_path),
        _layer(BATCHES, settings.predictions_dir),
    )


def _layer(name: str, root: Path, skip: date | None = None) -> Layer:
    try:
        if name == BATCHES:
            days = batch_dates(root)
            return Layer(name, days[0], days[-1], len(days)) if days else Layer(name)
        days = [d for d in partitions.partition_days(root) if d != skip]
        if not days:
            return Layer(name)
        rows = partitions.count_rows(root, days[0], days[-1])
        return Layer(name, days[0], days[-1], len(days), rows)
    except READ_ERRORS as exc:
        return Layer(name, error=redact(f"{type(exc).__name__}: {exc}"))


def _night(settings: Settings, layers: tuple[Layer, ...]) -> NightState:
    by_name = {layer.name: layer for layer in layers}
    last_batch = by_name[BATCHES].last
    if records := read_records(settings.nights_path):
        return _recorded_night(records[-1], last_batch)
    candidates = [
        d
        for d in (
            by_name[DAILY].last,
            by_name[FEATURES].last,
            day_of(start_of(last_batch)) if last_batch else None,  # the night that scored it
        )
        if d
    ]
    if not candidates:
        return NightState()
    day = max(candidates)
    on_disk = _steps_on_disk(settings, day)
    steps = [
        on_disk.get(stage.name) or Step(stage.name, "no record", "leaves nothing dated on disk")
        for stage in night(source=settings.source is not None)
    ]
    return NightState(day, tuple(steps), last_batch)


def _recorded_night(record: dict, last_batch: date | None) -> NightState:
    """The night ``churn nightly`` recorded: each step's state and exit code."""
    steps = tuple(Step(step["step"], step["state"], _step_detail(step)) for step in record["steps"])
    stopped = None
    if record.get("stopped_at"):
        stopped = {"step": record["stopped_at"], "exit_code": str(record["exit_code"]),
                   "day": record["day"]}  # fmt: skip
    return NightState(date.fromisoformat(record["day"]), steps, last_batch, stopped)


def _step_detail(step: dict) -> str:
    if "exit_code" not in step:
        return ""
    return f"exit {step['exit_code']}, {step['seconds']:.0f} s"


def _steps_on_disk(settings: Settings, day: date) -> dict[str, Step]:
    """The steps whose output for the night of ``day`` is on disk, dated (a night run step
    by step, or by the demo, leaves no record of its own)."""
    run_time = stamp_of(day).date()  # the night's T names its batch and drift report

    def has(root: Path) -> Step:
        there = day in partitions.partition_days(root)
        return Step("", "done" if there else "missing", f"day {day}" if there else f"no {day}")

    steps = {
        "validate": has(settings.validated_events_path),
        "prepare": has(settings.user_daily_path),
        "features": has(settings.features_path),
    }
    batch = batch_dir(settings.predictions_dir, run_time)
    if (batch / RUN_FILE).is_file():
        finished = json.loads((batch / RUN_FILE).read_text()).get("finished_at", "")
        steps["batch"] = Step("", "done", f"as of {run_time}, finished {finished[:16]}")
    else:
        steps["batch"] = Step("", "missing", f"no batch as of {run_time}")
    from monitor.drift import drift_history  # matplotlib: only when there is a night

    drift = {str(r.get("as_of")): r for r in drift_history(settings)}.get(run_time.isoformat())
    steps["drift"] = (
        Step("", "done", f"as of {run_time}: {drift.get('status')}")
        if drift
        else Step("", "missing", f"no drift report as of {run_time}")
    )
    return {name: Step(name, s.state, s.detail) for name, s in steps.items()}


def _model(settings: Settings) -> ModelState:
    version = registry.production(settings.models_dir)
    if version is None:
        return ModelState()
    created = load_card(settings.models_dir, version).created_at
    promoted = [r for r in registry.history(settings.models_dir) if r.get("version") == version]
    return ModelState(
        version,
        _utc(created.isoformat()),
        _utc(promoted[-1].get("promoted_at")) if promoted else None,
    )


def _utc(text: object) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(str(text))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _redis(settings: Settings) -> RedisState:
    """DBSIZE is O(1) but counts every project's keys; the project's keys (Feast's end in
    the project's name) are counted over a SCAN of at most REDIS_KEY_SAMPLE keys."""
    import redis

    url = redact(settings.redis_url)
    kind = redis.RedisCluster if settings.redis_cluster else redis.Redis
    try:
        client = kind.from_url(
            settings.redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        db_keys = int(client.dbsize())  # type: ignore[arg-type]  # redis-py: reply Awaitable | Any
        suffix = settings.feast_project.encode()
        sample = list(islice(client.scan_iter(count=1000), REDIS_KEY_SAMPLE))
    except (redis.RedisError, redis.exceptions.RedisClusterException, *READ_ERRORS) as exc:
        return RedisState(url, error=redact(f"{type(exc).__name__}: {exc}"))
    matches = sum(key.endswith(suffix) for key in sample)
    exact = len(sample) >= db_keys
    estimate = matches if exact or not sample else round(matches / len(sample) * db_keys)
    return RedisState(url, True, db_keys, estimate, len(sample))


def _source(settings: Settings) -> SourceState:
    if settings.source is None:
        return SourceState()
    from ingestion.sources import source_url

    url = source_url(settings)
    if url.startswith("dir://"):
        from core.history import read_records
        from ingestion.landing_source import manifest_path

        records = read_records(manifest_path(settings))
        taken = [r for r in records if r.get("outcome") == "ingested"]
        newest = taken[-1] if taken else None
        return SourceState(
            redact(url),
            _utc(newest["taken_at"]) if newest else None,
            _utc(records[-1].get("taken_at")) if records else None,
            f"newest file taken: {newest['name']}" if newest else "no file taken yet",
        )
    from ingestion.postgres_source import PostgresSource, load_state

    source = PostgresSource.from_settings(settings, url)
    state = load_state(settings).get(source.name, {})
    column = source.mark_source_column()
    return SourceState(
        source.name, _utc(state.get("mark")), _utc(state.get("updated_at")), f"mark column {column}"
    )


def _late(settings: Settings) -> LateDays:
    days = raw_store.pending_days(settings)
    if not days:
        return LateDays()
    changed = (settings.raw_dir / raw_store.PENDING_FILE).stat().st_mtime
    return LateDays(tuple(days), datetime.fromtimestamp(changed, UTC))


def problems(status: Status, now: datetime, settings: Settings) -> list[Problem]:
    """What is wrong at ``now``, errors first; each message one line naming the fix."""
    found = [
        *_data_problems(status),
        *_night_problems(status, now),
        *_model_problems(status, now, settings),
        *_redis_problems(status, settings),
        *_source_problems(status, now),
        *_late_problems(status, now),
    ]
    return sorted(found, key=lambda p: p.severity != "error")


def _error(area: str, message: str) -> list[Problem]:
    return [Problem("error", area, message)]


def _warn(area: str, message: str) -> list[Problem]:
    return [Problem("warn", area, message)]


def _data_problems(status: Status) -> list[Problem]:
    if unreadable := [x for x in status.layers if x.error]:
        return _error("data", f"cannot read {unreadable[0].name}: {unreadable[0].error}")
    raw, validated = status.layer(RAW), status.layer(VALIDATED)
    daily, features = status.layer(DAILY), status.layer(FEATURES)
    if not raw.days and not validated.days:
        return _error("data", "no data yet: run `churn data ingest` (CHURN_SOURCE, or "
                      "--users-file and --events-file), or `churn demo` for a demo world")  # fmt: skip
    made_by = {VALIDATED: "churn data validate", DAILY: "churn data prepare",
               FEATURES: "churn features build"}  # fmt: skip
    for layer in (validated, daily, features):
        if not layer.days:
            return _error("data", f"no {layer.name} yet: run `{made_by[layer.name]}`")
    if daily.last and features.last and features.last < daily.last:
        return _warn("data", f"features end on {features.last}, user_daily on {daily.last}: "
                     f"run `churn features build --day {daily.last}`")  # fmt: skip
    return []


def _night_problems(status: Status, now: datetime) -> list[Problem]:
    night = status.night
    if night.error:
        return _error("night", f"cannot read the night's outputs: {night.error}")
    found = []
    if night.stopped:
        day, step, code = night.stopped["day"], night.stopped["step"], night.stopped["exit_code"]
        found += _error("night", f"the night of {day} stopped at {step} (exit {code}): fix it, "
                        f"then `churn nightly --day {day}`")  # fmt: skip
    if night.last_batch is None:
        return found + _error("night", "no night has scored yet: run `churn nightly` (with a "
                              "production model)")  # fmt: skip
    age = now - start_of(night.last_batch)
    if age > NIGHT_MAX_AGE:
        found += _error("night", f"the newest batch (as of {night.last_batch}) is {_hours(age)} "
                        f"old (> {_hours(NIGHT_MAX_AGE)}): a later night did not complete; "
                        "run `churn nightly`")  # fmt: skip
    elif night.day and night.day >= night.last_batch:
        done = [s.name for s in night.steps if s.state == "done" and s.name != "drift"]
        after = f"after {done[-1]}" if done else "before any output"
        found += _warn("night", f"the night of {night.day} has no batch yet: it stopped "
                       f"{after}, or is still running")  # fmt: skip
    return found


def _model_problems(status: Status, now: datetime, settings: Settings) -> list[Problem]:
    model, limit = status.model, timedelta(days=settings.max_model_age_days)
    if model.error:
        return _error("model", f"cannot read the registry: {model.error}")
    if model.version is None:
        return _error("model", "no production model: run `churn train`, then `churn promote`")
    if model.created_at and now - model.created_at > limit:
        return _warn("model", f"production model {model.version} is {(now - model.created_at).days}"
                     f" days old (> CHURN_MAX_MODEL_AGE_DAYS={settings.max_model_age_days}): the "
                     "retraining loop has not replaced it; see `churn monitor retrain-if-needed`")  # fmt: skip
    return []


def _redis_problems(status: Status, settings: Settings) -> list[Problem]:
    store, project = status.redis, settings.feast_project
    if not store.reachable:
        return _error("redis", f"Redis at {store.url} is not reachable ({store.error}): start "
                      "it, or fix CHURN_REDIS_URL")  # fmt: skip
    if store.project_keys or not status.layer(FEATURES).days:
        return []
    if store.exact:
        return _error("redis", f"no keys of project {project} in Redis: run "
                      "`churn features materialize`")  # fmt: skip
    return _warn("redis", f"no key of project {project} among {store.sampled:,} sampled of "
                 f"{store.db_keys:,}: run `churn features materialize` if it never ran")  # fmt: skip


def _source_problems(status: Status, now: datetime) -> list[Problem]:
    source = status.source
    if source.error:
        return _error("source", f"CHURN_SOURCE: {source.error}")
    if source.name is None:
        return []
    if source.updated_at is None:
        return _warn("source", "CHURN_SOURCE has not been read yet: run `churn data ingest`")
    if now - source.updated_at > INGEST_MAX_AGE:
        return _warn("source", f"CHURN_SOURCE last read {_hours(now - source.updated_at)} ago "
                     f"(> {_hours(INGEST_MAX_AGE)}): run `churn data ingest`")  # fmt: skip
    return []


def _late_problems(status: Status, now: datetime) -> list[Problem]:
    late = status.late
    if late.error:
        return _error("late days", f"cannot read the pending days: {late.error}")
    if late.days and late.unchanged_since and now - late.unchanged_since > LATE_MAX_WAIT:
        return _error("late days", f"{len(late.days)} day(s) with late events ({late.days[0]} … "
                      f"{late.days[-1]}) have waited over {_hours(now - late.unchanged_since)} "
                      "for a rebuild: run `churn nightly`")  # fmt: skip
    return []


def verdict(found: list[Problem]) -> str:
    """``error`` when any problem is one, else ``warn`` when any, else ``ok``."""
    severities = {p.severity for p in found}
    return "error" if "error" in severities else "warn" if severities else "ok"


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:.0f} h"


def _at(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "never"


def _age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "age unknown"
    days = (now - moment).total_seconds() / 86400
    return f"{days:.1f} days old" if days >= 1 else f"{days * 24:.0f} h old"


STYLES = {
    "done": "green",
    "missing": "red",
    "failed": "red",
    "no record": "dim",
    "ok": "green",
    "warn": "yellow",
    "error": "red",
}


def print_status(status: Status, found: list[Problem], console: Console) -> None:
    """The screen: data layers, the last night's steps, the model, Redis, the source, the
    late days, then the problems (or "all well")."""
    now = status.checked_at
    console.print(f"[bold]churn status[/bold] at {_at(now)}, project {status.project}")
    data = Table(title="Data", title_justify="left")
    for column in ("layer", "first", "last", "days", "rows"):
        data.add_column(column, justify="right" if column in ("days", "rows") else "left")
    for layer in status.layers:
        rows = f"{layer.rows:,}" if layer.rows is not None else ""
        data.add_row(
            layer.name, str(layer.first or "none"), str(layer.last or ""), f"{layer.days:,}", rows
        )
    console.print(data)
    night_state = status.night
    title = f"Last night: {night_state.day}" if night_state.day else "Last night: none yet"
    steps = Table(title=title, title_justify="left")
    for column in ("step", "state", "detail"):
        steps.add_column(column)
    for step in night_state.steps:
        steps.add_row(step.name, f"[{STYLES[step.state]}]{step.state}[/]", step.detail)
    if night_state.error:
        steps.add_row("", "[red]unreadable[/]", night_state.error)
    elif not night_state.steps:
        steps.add_row("", "[dim]none[/]", "no user_daily, features or batch yet")
    console.print(steps)
    parts = Table(title="Services and state", title_justify="left")
    for column in ("part", "state"):
        parts.add_column(column)
    for name, line in _summary_lines(status):
        parts.add_row(name, line)
    console.print(parts, soft_wrap=True)
    outcome = verdict(found)
    for problem in found:
        console.print(
            f"[{STYLES[problem.severity]}]{problem.severity}[/] {problem.area}: {problem.message}",
            soft_wrap=True,
        )
    if outcome == "ok":
        console.print("[green]all well[/green]")
    console.print(f"exit {EXIT_CODES[outcome]} ({outcome})")


def _summary_lines(status: Status) -> list[tuple[str, str]]:
    now, model, store = status.checked_at, status.model, status.redis
    if model.error:
        model_line = f"unreadable: {model.error}"
    elif model.version is None:
        model_line = "no production model"
    else:
        model_line = (
            f"{model.version}, {_age(model.created_at, now)}, promoted {_at(model.promoted_at)}"
        )
    if not store.reachable:
        redis_line = f"{store.url}: unreachable ({store.error})"
    else:
        counted = "exactly" if store.exact else f"≈, from {store.sampled:,} keys sampled"
        redis_line = (
            f"{store.url}: reachable; {store.db_keys:,} keys in the database (every "
            f"project); {store.project_keys:,} of project {status.project} ({counted})"
        )
    source = status.source
    if source.error:
        source_line = f"unreadable: {source.error}"
    elif source.name is None:
        source_line = "CHURN_SOURCE not set (files are ingested by hand)"
    else:
        source_line = (
            f"{source.name}: mark {_at(source.mark)}, last read "
            f"{_at(source.updated_at)}; {source.detail}"
        )
    late = status.late
    if late.error:
        late_line = f"unreadable: {late.error}"
    elif not late.days:
        late_line = "none pending"
    else:
        late_line = (
            f"{len(late.days)} pending ({late.days[0]} … {late.days[-1]}), list "
            f"unchanged since {_at(late.unchanged_since)}"
        )
    return [
        ("model", model_line),
        ("redis", redis_line),
        ("source", source_line),
        ("late days", late_line),
    ]


def status_json(status: Status, found: list[Problem]) -> dict:
    """The state, the problems, the verdict and its exit code, JSON-ready (ISO 8601 times)."""
    outcome = verdict(found)
    payload: dict[str, Any] = {
        "verdict": outcome,
        "exit_code": EXIT_CODES[outcome],
        "problems": [asdict(p) for p in found],
        "status": asdict(status),
    }
    payload["status"]["redis"]["exact"] = status.redis.exact
    return json.loads(json.dumps(payload, default=lambda v: v.isoformat()))


def show_status(settings: Settings, now: datetime, console: Console, as_json: bool = False) -> int:
    """Gather, judge and show the state at ``now``; the exit code (``EXIT_CODES``)."""
    status = gather_status(settings, now)
    found = problems(status, now, settings)
    if as_json:
        console.out(json.dumps(status_json(status, found), indent=2), highlight=False)
    else:
        print_status(status, found, console)
    return EXIT_CODES[verdict(found)]
