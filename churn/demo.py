"""The one entry point ``make demo`` runs: every stage on the embedded default, then a summary.

The set-up stages of ``churn.stages.DEMO``, in-process: generate → validate → prepare →
features → feast apply → materialize → train both models → promote the better one through
the gate; then serve it and ask it about two users, as the printed curl lines do.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from churn.progress import StageLog, training_table, tuning_table
from churn.stages import DEMO, STAGES, Stage, StageInputs, ValidationFailed
from core import partitions
from core.readiness import free_port, port_free
from core.redaction import redact
from core.settings import Settings
from core.sql_engine import connect, quote_path
from feature_repo.redis_server import RedisUnavailableError, ensure_redis
from feature_repo.spec import FEATURE_VIEW, feature_names
from feature_repo.store import online_feature_rows
from ingestion.generate import Scenario
from ingestion.validate import print_report
from online_api import server
from served.population import in_population_sql
from training.gate import Decision
from training.promote import PromotionResult
from training.train import TrainResult


@dataclass(frozen=True)
class DemoBuild:
    """What the demo pipeline built and decided, before anything is served."""

    last_day: date
    online_users: int
    trained: TrainResult
    promoted: PromotionResult


# Each stage's result line, as the demo prints it (``results`` holds the stages run so far).
NOTES: dict[str, Callable[[Settings, dict[str, Any]], str]] = {
    "generate": lambda s, r: f"{r['generate'].users:,} users, {r['generate'].events:,} events",
    "validate": lambda s, r: "all gates passed",
    "prepare": lambda s, r: (
        f"{r['prepare'].rows:,} user-days, {r['prepare'].first_day} … {r['prepare'].last_day}"
    ),
    "features": lambda s, r: (
        f"{r['features'].rows:,} rows × {len(feature_names(s.windows))} features"
    ),
    "apply": lambda s, r: f"project {s.feast_project}",
    "materialize": lambda s, r: f"{r['online']:,} users in the online store",
    "train": lambda s, r: (
        f"{', '.join(f'{k} {v}' for k, v in r['train'].versions.items())}; best: {r['train'].best}"
    ),
    "promote": lambda s, r: (
        ("promoted " if r["promote"].decision.promote else "refused ")
        + r["promote"].decision.candidate
    ),
}


def build_demo(
    settings: Settings,
    users: int,
    days: int,
    log: StageLog,
    now: datetime | None = None,
    apply: bool = True,
    scenario: Scenario = "baseline",
) -> DemoBuild:
    """The demo's stages (``churn.stages.DEMO``) up to the gate, on ``days`` ending the day
    before ``now``; ``ValidationFailed`` when the generated data fails a gate.

    ``now`` (default: the clock) is the demo's clock for every stage, so a run can be
    replayed as of any date; the seed's world is the same whatever it is. ``apply=False``
    skips ``feast apply`` when this data dir's registry already holds the definitions.
    ``scenario`` is the generator's world (``benchmarks/model_quality.py`` runs each).
    """
    inputs = StageInputs(settings, now or datetime.now(UTC), users=users, days=days,
                         scenario=scenario)  # fmt: skip
    results: dict[str, Any] = {}
    for name in DEMO:
        if name == "apply" and not apply:
            continue
        results[name] = run_stage(STAGES[name], inputs, log)
        if name == "materialize":  # what the demo checks of it: whom the API can answer for
            results["online"] = _online_users(settings, results["features"].last_day)
        log.note(NOTES[name](settings, results))
    promoted = results["promote"]
    for reason in promoted.decision.reasons:
        log.console.print(f"  {reason}")
    return DemoBuild(results["features"].last_day, results["online"], results["train"], promoted)


def run_stage(stage: Stage, inputs: StageInputs, log: StageLog) -> Any:
    """Run ``stage`` in this process under a progress line of ``log``; its result."""
    run = stage.load()  # importing its package is not the stage's time
    with log.stage(stage.title, total=inputs.days if stage.counts_days else None) as progress:
        return run(replace(inputs, progress=progress))


def replay_demo(
    base: Settings, users: int, days: int, first: date, count: int, artifacts_root: Path
) -> Iterator[tuple[datetime, Settings, DemoBuild]]:
    """``build_demo`` as of ``count`` consecutive days from ``first``, each at another time
    of day: the same world shifted, so every day must give the same metrics and verdict.

    One data dir and Feast project (applied once); a registry per day under
    ``artifacts_root``, so each candidate meets the gate as the demo's does, with no
    production model. Stage output is not printed.
    """
    for i in range(count):
        now = datetime.combine(first + timedelta(days=i), time((5 * i) % 24, (17 * i) % 60), UTC)
        settings = base.model_copy(update={"artifacts_dir": artifacts_root / f"artifacts-{i}"})
        log = StageLog(Console(file=io.StringIO()))
        yield now, settings, build_demo(settings, users, days, log, now=now, apply=i == 0)


def run_demo(
    settings: Settings, users: int, days: int, console: Console, interactive: bool = False
) -> int:
    """Run the pipeline on fresh demo data, then serve production; returns the exit code
    (non-zero when nothing can be served, so no script takes that for a success)."""
    log = StageLog(console)
    try:
        settings = ensure_redis(settings, say=console.print)
    except RedisUnavailableError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    try:
        build = build_demo(settings, users, days, log)
    except ValidationFailed as exc:
        print_report(exc.report, console)
        return 1
    console.print(log.table("make demo"))
    console.print(_summary(settings, build.online_users))
    console.print(training_table(build.trained))
    console.print(tuning_table(build.trained))
    decision = build.promoted.decision
    if not decision.promote:
        if decision.production is None:
            console.print(refusal_advice(decision), soft_wrap=True)  # the command stays one line
            return 1
        # An earlier run's model passed the gate: it keeps serving, as it would in production.
        console.print(
            f"\nThe gate refused {decision.candidate}; production stays {decision.production}."
        )
    return serve_and_ask(settings, _sample_ids(settings, build.last_day), console, interactive)


def refusal_advice(decision: Decision) -> str:
    """What a newcomer reads when the gate refuses the demo's model: the checks that failed
    and the one command that serves it anyway."""
    return (
        f"\n[red]The gate refused {decision.candidate}[/red]: {'; '.join(decision.failed)}.\n"
        "Nothing is served. To serve this model anyway, as an operator's decision:\n"
        f"  churn promote --force --version {decision.candidate} "
        '--reason "demo: serve what the gate refused"\n'
        "then `churn serve`."
    )


def serve_and_ask(settings: Settings, ids: list[str], console: Console, interactive: bool) -> int:
    """Start the API, ask it about ``ids`` as the printed curl lines do, then keep it serving
    (at a terminal, until Ctrl-C) or stop it (scripts and CI must not hang on a demo)."""
    host = settings.api_host
    port = settings.api_port if port_free(host, settings.api_port) else free_port(host)
    log_file = settings.artifacts_dir / "demo-serve.log"
    token = settings.api_token.get_secret_value() if settings.api_token else None
    auth = '-H "Authorization: Bearer $CHURN_API_TOKEN" ' if token else ""
    process = server.start(settings, port, log_file)
    try:
        with console.status(f"starting churn serve on port {port}"):
            server.wait_ready(f"http://{host}:{port}", process, log_file)
        console.print(f"\n[bold]churn serve[/bold] answers on http://{host}:{port}; two users:")
        for user_id in ids:
            console.print(f"  curl -s {auth}localhost:{port}/users/{user_id}/churn-risk")
            status, body = server.get_json(
                f"http://{host}:{port}/users/{user_id}/churn-risk", token
            )
            if status != 200:
                console.print(f"[red]  → {status}: {body.get('detail')}[/red]")
                return 1
            console.print(answer_line(body))
        if not interactive:
            console.print("Not a terminal, so the server stops here; `churn serve` starts it.")
            return 0
        console.print("Serving until Ctrl-C.")
        process.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    finally:
        server.stop(process)


def answer_line(body: dict) -> str:
    """The line under a curl: the risk, its band, whether the user is on the newest night's
    list and their arm there (``null`` off the list: nobody to contact), the top factors."""
    factors = ", ".join(f["feature"] for f in body["top_factors"]) or "none"
    listed = "true" if body["listed"] else "false"
    return (f"  → churn_risk {body['churn_risk']:.3f} ({body['risk_band']}), listed {listed}, "
            f"arm {body['arm'] or 'null'}; top factors: {factors}")  # fmt: skip


def _sample_ids(settings: Settings, last_day: date) -> list[str]:
    """Two users the online store knows and the model is for: the first and the last id
    of the newest day's population (``served.population.in_population_sql``), the users the
    API answers for."""
    rows = _query(
        settings,
        f"SELECT min(user_id), max(user_id) FROM {_day(settings, last_day)} "
        f"WHERE {in_population_sql(settings.active_lookback_days)}",
    )
    return list(rows[0])


def _online_users(settings: Settings, last_day: date) -> int:
    """How many of the newest day's users the online store answers for."""
    ids = [row[0] for row in _query(settings, f"SELECT user_id FROM {_day(settings, last_day)}")]
    values = online_feature_rows(settings, ids, [f"{FEATURE_VIEW}:tenure_days"])
    return sum(v is not None for v in values["tenure_days"])


def _query(settings: Settings, sql: str) -> list[tuple]:
    """All rows of ``sql`` on a connection of its own (never DuckDB's shared default one)."""
    con = connect(settings)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _day(settings: Settings, day: date) -> str:
    files = partitions.partition_files(settings.features_path, [day])
    return "read_parquet([" + ", ".join(quote_path(f) for f in files) + "])"


def _summary(settings: Settings, online: int) -> Table:
    table = Table(title="Tables")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("where")
    for name, path in (
        ("users", settings.validated_users_path),
        ("events", settings.validated_events_path),
        ("user_daily", settings.user_daily_path),
        ("user_features", settings.features_path),
    ):
        source = quote_path(partitions.table_glob(path) if path.is_dir() else path)
        rows = _query(settings, f"SELECT count(*) FROM read_parquet({source})")[0][0]
        table.add_row(name, f"{rows:,}", str(path))
    table.add_row("online (Redis)", f"{online:,}", _redis_where(settings))
    table.caption = (
        f"{len(feature_names(settings.windows))} features over windows {settings.windows}; "
        'plain Feast: eval "$(churn env --reveal)" && cd feature_repo && feast feature-views list'
    )
    return table


def _redis_where(settings: Settings) -> str:
    return f"{redact(settings.redis_url)} project {settings.feast_project}"
