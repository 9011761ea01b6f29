"""The ``churn`` command line: one sub-command per stage, each a thin call into a function."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from churn.progress import StageLog, training_table, tuning_table
from core.redaction import RedactingFormatter, redact
from core.settings import Settings, get_settings
from core.timeline import day_of
from monitor.jobs import ingest_samples, job_run, validation_samples

# No local variables in a traceback: a URL in one may carry its password.
app = typer.Typer(
    help="Churn prediction on a Feast feature store.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(
    help="Raw data: generate or ingest, validate, prepare.", no_args_is_help=True
)
features_app = typer.Typer(help="Rolling features and the Feast store.", no_args_is_help=True)
batch_app = typer.Typer(
    help="The nightly batch: score everyone, write the list.", no_args_is_help=True
)
monitor_app = typer.Typer(
    help="Drift, realized performance, online/offline skew, retraining.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(batch_app, name="batch")
app.add_typer(monitor_app, name="monitor")

console = Console()

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


# The world `make demo` runs: big enough that the gate's verdict rests on the model's
# signal, not on which few users lead the validation nights.
DEMO_USERS = 2000
DEMO_DAYS = 120


@app.callback()
def _logging(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Decisions (promotion, gates) are logged to stderr, as well as printed; with every
    password in a line shown as ***."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    for noisy in ("feast", "ibis", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _settings() -> Settings:
    try:
        return get_settings()
    except Exception as exc:  # pydantic's message (or check_variables') names the variable
        # On stderr: `eval "$(churn env)"` must not run the message as a command.
        message = f"[red]Bad configuration:[/red] {redact(str(exc))}"
        Console(stderr=True).print(message, soft_wrap=True)
        raise typer.Exit(2) from exc


def _online_settings(settings: Settings | None = None) -> Settings:
    """Settings whose ``redis_url`` is the online store, found as every command finds it
    (``feature_repo.redis_server.online_store``) and said in one line; exported, so the
    processes this one starts (the API's workers, the night's steps) use the same one."""
    from feature_repo.redis_server import online_store

    given = settings or _settings()
    found = online_store(given, say=lambda line: console.print(line, style="dim", soft_wrap=True))
    if found.redis_url != given.redis_url:
        os.environ["CHURN_REDIS_URL"] = found.redis_url
    return found


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the errors a user can fix (missing input, bad file or value, no Redis, a full disk)
    into one line, unwrapped (a log line a grep finds whole).

    ``IngestError`` is a ``ValueError``; so are the generator's argument errors.
    """
    from feature_repo.feast_cli import FeastCommandError
    from feature_repo.redis_server import RedisUnavailableError
    from ingestion.ingest import SourceError
    from ingestion.raw_store import IngestRunning
    from training.registry import RegistryError

    try:
        yield
    except (
        OSError,  # a missing file, a full disk, a read-only dir: strerror and the path
        ValueError,
        RedisUnavailableError,
        FeastCommandError,
        RegistryError,
        SourceError,
        IngestRunning,
    ) as exc:
        console.print(f"[red]{type(exc).__name__}:[/red] {redact(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc


def _day(value: datetime | None) -> date | None:
    return value.date() if value else None


def _day_flag(day: datetime | None, old_as_of: datetime | None) -> date | None:
    """The calendar day of ``--day``, or of its deprecated spelling ``--as-of`` (warned)."""
    if old_as_of is None:
        return _day(day)
    if day is not None:
        raise typer.BadParameter("--as-of is the deprecated spelling of --day: give only --day")
    print("warning: --as-of is deprecated for a calendar day; use --day", file=sys.stderr)
    return _day(old_as_of)


@data_app.command("generate")
def data_generate(
    users: Annotated[int, typer.Option(min=1, help="Number of users.")] = DEMO_USERS,
    days: Annotated[
        int, typer.Option(min=1, help="Days of history, ending yesterday.")
    ] = DEMO_DAYS,
    seed: Annotated[int | None, typer.Option(help="Random seed (default CHURN_SEED).")] = None,
    start: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="First day (pins the range for reproducibility)."),
    ] = None,
    scenario: Annotated[
        str,
        typer.Option(
            help="baseline; drift: the world changes from --drift-day on; purchases: a course "
            "shop (enrolments and payments only, about half the recent buyers churn); concept: from "
            "--drift-day on the same behaviour carries five times the churn hazard (inputs unchanged)."
        ),
    ] = "baseline",
    drift_day: Annotated[
        int | None, typer.Option(help="Day index where the drift or concept scenario starts.")
    ] = None,
    into_source: Annotated[
        bool,
        typer.Option(
            help="Write the world into the CHURN_SOURCE PostgreSQL (a demo portal's "
            "database, as compose's portal-seed does) instead of the raw tables."
        ),
    ] = False,
) -> None:
    """Generate the demo portal's users and events (and the hidden ground truth).

    Streamed a day at a time over blocks of users: memory does not grow with the world."""
    from ingestion.generate import SCENARIOS, DemoWorld, write_demo_world

    settings = _settings()
    if scenario not in SCENARIOS:
        raise typer.BadParameter(
            f"--scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}"
        )
    log = StageLog(console)
    with _user_errors(), log.stage("generate", total=days) as progress:
        world = DemoWorld(
            n_users=users,
            days=days,
            seed=settings.seed if seed is None else seed,
            start=_day(start),
            scenario=scenario,  # type: ignore[arg-type]
            drift_day=drift_day,
        )
        if into_source:
            if not _seed_source(settings, world, progress):
                return
        else:
            write_demo_world(world, settings, progress)
    where = "CHURN_SOURCE" if into_source else settings.raw_dir
    log.note(f"{world.n_users:,} users, {world.n_events:,} events → {where}")


def _seed_source(settings: Settings, world, progress) -> bool:
    """Seed the CHURN_SOURCE PostgreSQL with ``world``, a day of events at a time; False
    (nothing simulated) when it was seeded already."""
    from ingestion.generate import contract_users, source_event_days
    from ingestion.postgres_source import seed_portal
    from ingestion.sources import source_url

    url = source_url(settings)
    if not url.startswith(("postgresql://", "postgres://")):
        raise typer.BadParameter("--into-source needs CHURN_SOURCE=postgresql://…")
    seeded = seed_portal(settings, url, contract_users(world),
                         source_event_days(world, progress))  # fmt: skip
    if not seeded:
        console.print(
            f"{settings.source_users} exists at the source: already seeded, left as it is"
        )
    return seeded


@data_app.command("ingest")
def data_ingest(
    users_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A full export of the users (CSV or "
            "Parquet), with --events-file: raw becomes exactly the export.",
        ),
    ] = None,
    events_file: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="A full export of the events."),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="postgresql://user@host:5432/db or dir:///landing (default: "
            "CHURN_SOURCE); read incrementally, only what is new."
        ),
    ] = None,
    full: Annotated[
        bool,
        typer.Option(
            help="Re-read the whole database source and take its corrections to "
            "events already stored (only the days that differ are rebuilt)."
        ),
    ] = False,
) -> None:
    """Land the portal's users and events in the raw tables: a full export (files), or
    what is new at the source (its database, or a landing folder)."""
    from core.push import push
    from ingestion.ingest import ingest_files
    from ingestion.sources import ingest_from_source

    if (users_file is None) != (events_file is None):
        raise typer.BadParameter("--users-file and --events-file go together")
    settings = _settings()
    log = StageLog(console)
    with _user_errors(), job_run(settings, "ingest"), log.stage("ingest") as progress:
        if users_file and events_file:
            landed = ingest_files(users_file, events_file, settings)
        else:
            landed = ingest_from_source(settings, source, progress=progress, full=full)
        push(settings, "churn_ingest", ingest_samples(landed))
    if landed.events == 0 and landed.users == 0:
        log.note(f"nothing new ({landed.already_stored:,} events read were already stored)")
        return
    log.note(f"{landed.events:,} new events over {len(landed.days)} day(s), {landed.users:,} "
             f"users added or changed ({landed.already_stored:,} already stored) "
             f"→ {settings.raw_dir}")  # fmt: skip


@data_app.command("validate")
def data_validate(
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Validate every raw day, not only the days new or changed since the last "
            "accepted run.",
        ),
    ] = False,
) -> None:
    """Run the validation gates on the raw days that changed; on failure exit 1 and change
    nothing downstream."""
    from core.push import push
    from ingestion.validate import ValidationRunning, print_report, run_validation

    settings = _settings()
    log = StageLog(console)
    with _user_errors(), job_run(settings, "validate"):
        with log.stage("validate") as progress:
            try:
                report = run_validation(settings, full=full, progress=progress)
            except ValidationRunning as exc:
                console.print(f"[red]{type(exc).__name__}:[/red] {exc}")
                raise typer.Exit(1) from exc
        push(settings, "churn_validate", validation_samples(report))
        print_report(report, console)
        if not report.passed:
            console.print(
                f"[red]Validation failed[/red]; report: {settings.reports_dir / 'validation'}"
            )
            raise typer.Exit(1)
    warned = f", {len(report.warnings)} warnings" if report.warnings else ""
    log.note(
        f"passed: {report.stats.get('users', 0):,} users, "
        f"{report.stats.get('events', 0):,} events{warned}"
    )


@data_app.command("prepare")
def data_prepare(day: Day = None, as_of: DeprecatedAsOfDay = None) -> None:
    """Build the user_daily table (one row per user per UTC day) from validated events; with
    --day D, day D and every earlier day that received late events."""
    from ingestion.prepare import build_days_through, build_user_daily

    settings = _settings()
    log = StageLog(console)
    only = _day_flag(day, as_of)
    with _user_errors(), log.stage("prepare user_daily") as progress:
        if only is None:
            result = build_user_daily(settings, progress=progress)
        else:
            result = build_days_through(settings, only, progress=progress)
    log.note(f"{result.rows:,} user-days, {result.first_day} … {result.last_day}")


@features_app.command("build")
def features_build(day: Day = None, as_of: DeprecatedAsOfDay = None) -> None:
    """Compute the rolling-window features (the Feast offline store) from user_daily; with
    --day D, day D after every day since the oldest that received late events."""
    from ingestion.rolling_features import build_features_through, build_rolling_features

    settings = _settings()
    log = StageLog(console)
    only = _day_flag(day, as_of)
    with (
        _user_errors(),
        job_run(settings, "features"),
        log.stage("build features") as progress,
    ):
        if only is None:
            result = build_rolling_features(settings, progress=progress)
        else:
            result = build_features_through(settings, only, progress=progress)
    log.note(f"{result.rows:,} feature rows, {result.first_day} … {result.last_day}")


@features_app.command("sql")
def features_sql(
    first_day: Annotated[
        datetime, typer.Option(formats=["%Y-%m-%d"], help="First day to render for.")
    ] = datetime(2026, 1, 1),
    last_day: Annotated[
        datetime, typer.Option(formats=["%Y-%m-%d"], help="Last day to render for.")
    ] = datetime(2026, 1, 31),
) -> None:
    """Print the SQL the feature specification renders (user_daily, then rolling features).

    In the engine's dialect: CHURN_ENGINE=spark prints the Spark SQL that runs.
    """
    from ingestion.prepare import user_daily_sql
    from ingestion.rolling_features import rolling_features_sql

    settings = _settings()
    first, last = first_day.date(), last_day.date()
    queries = {
        "user_daily": user_daily_sql(first, last),
        "user_features": rolling_features_sql(settings.windows, first, last, first),
    }
    for name, sql in queries.items():
        if settings.engine == "spark":
            from core.spark_engine import to_spark

            sql = to_spark(sql)
        print(f"-- {name}\n{sql.strip()};\n")


@features_app.command("apply")
def features_apply() -> None:
    """Register the entity, source, feature view and feature service (feast plan + apply)."""
    from feature_repo.feast_cli import apply_definitions

    settings = _settings()
    log = StageLog(console)
    with _user_errors(), log.stage("feast apply"):
        output = apply_definitions(settings)
    console.print(output.strip())
    registry = "the SQL registry" if settings.feast_registry_url else settings.registry_path
    log.note(f"project {settings.feast_project}, registry: {registry}")


@features_app.command("materialize")
def features_materialize(
    end: Annotated[
        datetime | None, typer.Option(help="Load rows up to this UTC instant (default now).")
    ] = None,
    start: Annotated[
        datetime | None,
        typer.Option(help="Load rows from this instant (default: the view TTL before --end)."),
    ] = None,
    incremental: Annotated[
        bool, typer.Option(help="Feast's materialize-incremental: from the last run on.")
    ] = False,
) -> None:
    """Load the newest features of every user into the Redis online store."""
    from core.priority import lower_priority
    from core.push import push
    from feature_repo.store import materialize
    from monitor.jobs import online_freshness

    settings = _online_settings()
    lower_priority(settings.materialize_niceness)  # the API's requests first
    log = StageLog(console)
    with (
        _user_errors(),
        job_run(settings, "materialize"),
        log.stage("feast materialize") as progress,
    ):
        since, until = materialize(
            settings, end=_utc(end), start=_utc(start), incremental=incremental, progress=progress
        )
        push(settings, "churn_materialize", [online_freshness(settings, until)], replace=False)
    loaded = "since the last run" if since is None else f"from {since:%Y-%m-%d %H:%M}"
    log.note(f"online store loaded {loaded} to {until:%Y-%m-%d %H:%M} UTC")


@app.command("train")
def train() -> None:
    """Label, join features through Feast, train and calibrate both models, register them."""
    from training.train import train_models

    settings = _settings()
    log = StageLog(console)
    with _user_errors(), log.stage("train"):
        result = train_models(settings)
    log.note(f"{result.rows} rows, {result.missing} without features; best: {result.best}")
    table = training_table(result)
    if result.sample is not None:  # how much of the portal the fit saw: sampled of total
        sample = result.sample
        table.caption = (
            f"{table.caption}\nfitted on {sample.describe()} (cap {sample.max_users:,} from "
            f"{sample.cap_from}); validated on every user of the validation days"
        )
    console.print(table)
    console.print(tuning_table(result))


@app.command("promote")
def promote(
    version: Annotated[
        str | None, typer.Option(help="Candidate version (default: the newest run's best).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Switch to --version without the gate (restore a model).")
    ] = False,
    rollback: Annotated[
        bool, typer.Option(help="Switch back to the model production replaced.")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why, for --force and --rollback.")] = "operator",
) -> None:
    """Promote a candidate through the gate (floors, beating recency and production), or restore one."""
    from training import promote as promotion
    from training import registry

    settings = _settings()
    with _user_errors():
        if rollback:
            restored = registry.rollback(settings.models_dir, reason=f"rollback: {reason}")
            console.print(f"[green]production rolled back to {restored}[/green]")
            return
        if force:
            if version is None:
                raise typer.BadParameter("--force needs --version")
            promotion.force(settings, version, reason)
            console.print(f"[yellow]production forced to {version}[/yellow] ({reason})")
            return
        result = promotion.promote(settings, version)
    decision = result.decision
    for line in decision.reasons:
        console.print(("[green]" if line.startswith("pass") else "[red]") + line)
    verdict = "[green]promoted" if decision.promote else "[red]refused"
    console.print(
        f"{verdict}[/]: {decision.candidate} (production: {registry.production(settings.models_dir)})"
    )
    if not decision.promote:
        raise typer.Exit(3)


@app.command("serve")
def serve(
    host: Annotated[
        str | None, typer.Option(help="Listen address (default CHURN_API_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default CHURN_API_PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Workers (default CHURN_API_WORKERS).")
    ] = None,
) -> None:
    """Serve GET /users/{user_id}/churn-risk (uvicorn) with the production model."""
    import uvicorn

    settings = _online_settings()
    with metrics_directory():
        uvicorn.run(
            "online_api.app:app_factory",
            factory=True,
            host=host or settings.api_host,
            port=port or settings.api_port,
            workers=workers or settings.api_workers,
            log_level="warning",
        )


@contextmanager
def metrics_directory() -> Iterator[None]:
    """One prometheus multiprocess directory for all workers of this server, empty at start.

    Set before any worker imports prometheus_client (or Feast, which would pick a
    private one); an operator's PROMETHEUS_MULTIPROC_DIR is used, emptied, and kept.
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    path = Path(given or tempfile.mkdtemp(prefix="churn-api-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ["PROMETHEUS_MULTIPROCESS_DIR"] = str(path)
    try:
        yield
    finally:
        if given is None:
            shutil.rmtree(path, ignore_errors=True)


BatchDate = Annotated[
    datetime | None,
    typer.Option(
        "--as-of",
        formats=["%Y-%m-%d"],
        help="The batch's T, named by its date (00:00 UTC that day; default: the newest).",
    ),
]


@batch_app.command("score")
def batch_score(
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of", formats=["%Y-%m-%d"], help="Run time T (default: today 00:00 UTC)."
        ),
    ] = None,
) -> None:
    """Score the population with the production model (features from Feast's point-in-time
    join at T), write the predictions and the high-risk list; a re-run replaces the date."""
    from batch.job import print_batch, score_population

    settings = _settings()
    log = StageLog(console)
    with _user_errors(), job_run(settings, "batch"), log.stage("batch score") as progress:
        result = score_population(settings, _utc(as_of), progress=progress)
    log.note(f"{result.scored:,} scored, {result.skipped:,} skipped → {result.output_dir}")
    print_batch(result, console)
    if settings.pushgateway_url and not result.pushed:
        console.print(
            "[yellow]job metrics were not pushed: the Pushgateway did not answer[/yellow]"
        )


@monitor_app.command("drift")
def monitor_drift(as_of: BatchDate = None) -> None:
    """PSI of each feature and of the score, batch against the model's training reference.

    Exit code: 0 ok, 10 warn, 20 alert (1: an error).
    """
    from core.push import push
    from monitor.drift import (
        EXIT_CODES,
        drift_report,
        drift_samples,
        print_drift,
        write_drift_report,
    )

    settings = _settings()
    with _user_errors(), job_run(settings, "drift"):
        report = drift_report(settings, _day(as_of))
        path = write_drift_report(report, settings)
        push(settings, "churn_drift", drift_samples(report))
    print_drift(report, console)
    console.print(f"report: {path} (chart: {path.with_suffix('.png')})")
    raise typer.Exit(EXIT_CODES[report.status])


@monitor_app.command("estimate")
def monitor_estimate(as_of: BatchDate = None) -> None:
    """Expected churn rate, precision@K, PR-AUC (skill) and ROC-AUC of a batch from its
    calibrated probabilities, before any label; beside the realized figures once they exist.

    Exit code: 0 ok, 10 estimated skill under the floor, 20 under it for
    CHURN_ESTIMATE_ALERT_NIGHTS nights (1: an error).
    """
    from core.push import push
    from monitor.estimate import (
        EXIT_CODES,
        check_against_realized,
        estimate_report,
        estimate_samples,
        print_estimate,
        write_estimate_report,
    )

    settings = _settings()
    log = StageLog(console)
    with _user_errors(), job_run(settings, "estimate"), log.stage("estimate"):
        report = estimate_report(settings, _day(as_of))
        path = write_estimate_report(report, settings)
        checked = check_against_realized(settings)
        push(settings, "churn_estimate", estimate_samples(report, checked))
    log.note(f"{report.expected.rows:,} users, {report.expected.draws} draws → {path}")
    print_estimate(report, checked, console)
    console.print(f"chart: {path.with_suffix('.png')}")
    raise typer.Exit(EXIT_CODES[report.status])


@monitor_app.command("outcomes")
def monitor_outcomes() -> None:
    """Realized PR-AUC, ROC-AUC, precision@K and calibration of every batch whose horizon
    has passed; the history is kept and the newest exported."""
    from core.push import push
    from monitor.outcomes import outcome_samples, print_outcomes, realized_outcomes

    settings = _settings()
    with _user_errors(), job_run(settings, "outcomes"):
        report = realized_outcomes(settings)
        push(settings, "churn_outcomes", outcome_samples(report))
    print_outcomes(report, console)
    console.print(f"history: {report.history_path}")


@monitor_app.command("uplift")
def monitor_uplift() -> None:
    """Did outreach keep anyone? Churn of the contacted arm against the holdout, per risk band,
    for every night's list whose horizon has passed; revenue kept and contacts it took."""
    from core.push import push
    from monitor.uplift import print_uplift, realized_uplift, uplift_samples, write_uplift_report

    settings = _settings()
    with _user_errors(), job_run(settings, "uplift"):
        report = realized_uplift(settings)
        path = write_uplift_report(report, settings)
        push(settings, "churn_uplift", uplift_samples(report))
    print_uplift(report, console)
    if path is not None:
        console.print(f"report: {path} (chart: {path.with_suffix('.png')})")
    console.print(f"history: {report.history_path}")


@monitor_app.command("skew")
def monitor_skew(
    sample: Annotated[
        int | None, typer.Option(min=1, help="Users to compare (default CHURN_SKEW_SAMPLE).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed (default CHURN_SEED).")] = None,
) -> None:
    """What the API reads from Redis (its own read path and decoder) against the offline newest
    rows of sampled users.

    Exit code 3 when any cell differs or a sampled user is missing online.
    """
    from core.push import push
    from monitor.skew import print_skew, skew_report, skew_samples, write_skew_report

    settings = _online_settings()
    with _user_errors(), job_run(settings, "skew"):
        report = skew_report(settings, sample, seed)
        path = write_skew_report(report, settings)
        push(settings, "churn_skew", skew_samples(report))
    print_skew(report, console)
    console.print(f"report: {path}")
    if report.cells_mismatched or report.users_missing_online:
        raise typer.Exit(3)


@monitor_app.command("retrain-if-needed")
def monitor_retrain() -> None:
    """Retrain when drift alerts, realized PR-AUC falls below the floor or the model is old;
    the candidate goes through the same gate as `churn promote`."""
    from monitor.retrain import retrain_if_needed

    settings = _settings()
    log = StageLog(console)
    with _user_errors(), job_run(settings, "retrain"), log.stage("retrain if needed"):
        decision = retrain_if_needed(settings)
    if not decision.triggers:
        log.note(f"no trigger fired; production stays {decision.production_before}")
        return
    log.note("; ".join(decision.triggers))
    verdict = "promoted" if decision.promoted else "refused by the gate"
    console.print(f"candidate {decision.candidate}: {verdict}")
    for reason in decision.gate_reasons:
        console.print(f"  {reason}")
    console.print(f"production: {decision.production_after}")


@app.command("nightly")
def nightly(
    day: Annotated[
        datetime | None,
        typer.Option("--day", formats=["%Y-%m-%d"], help="The day just ended (default yesterday)."),
    ] = None,
    users_file: Annotated[
        Path | None,
        typer.Option(help="The portal's users export: ingested first (with --events-file)."),
    ] = None,
    events_file: Annotated[
        Path | None,
        typer.Option(help="The portal's events export: ingested first (with --users-file)."),
    ] = None,
) -> None:
    """The night's jobs once, in order, stopping at the first failure: ingest (with CHURN_SOURCE
    set or the export files given) → validate → prepare and features for the day (and the days
    late events reached) → materialize → batch score → estimate → drift → outcomes → uplift → skew →
    retrain-if-needed."""
    from churn.nightly import run_nightly

    if (users_file is None) != (events_file is None):
        raise typer.BadParameter("--users-file and --events-file go together")
    portal = (users_file, events_file) if users_file and events_file else None
    settings = _online_settings()
    yesterday = day_of(datetime.now(UTC))
    raise typer.Exit(run_nightly(settings, _day(day) or yesterday, console, portal=portal))


@app.command("bootstrap")
def bootstrap(
    data: Annotated[
        Path | None,
        typer.Option(
            envvar="CHURN_BOOTSTRAP_DATA",
            help="A folder of the portal's users.parquet|csv and events.parquet|csv (first "
            "choice; else CHURN_SOURCE is backfilled).",
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            envvar="CHURN_BOOTSTRAP_DEMO",
            help="With no folder and no CHURN_SOURCE: build on demo data (never by default).",
        ),
    ] = False,
    users: Annotated[
        int, typer.Option(min=1, envvar="CHURN_BOOTSTRAP_USERS", help="Demo users.")
    ] = DEMO_USERS,
    days: Annotated[
        int, typer.Option(min=1, envvar="CHURN_BOOTSTRAP_DAYS", help="Demo days, ending yesterday.")
    ] = DEMO_DAYS,
) -> None:
    """A stack's first start: data → validate → prepare → features → apply → train → promote →
    materialize; once a production model exists, only apply and materialize."""
    from churn.bootstrap import NoBootstrapData, run_bootstrap

    settings = _settings()
    with _user_errors():
        try:
            code = run_bootstrap(settings, console, data, demo, users, days)
        except NoBootstrapData as exc:  # one line in a container's log, however wide
            console.print(f"[red]bootstrap:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(1) from exc
    raise typer.Exit(code)


@app.command("schedule")
def schedule() -> None:
    """Run `churn nightly` at every CHURN_NIGHTLY_CRON time (UTC), in the foreground."""
    from churn.nightly import run_schedule

    run_schedule(_online_settings(), console)


@app.command("status")
def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the state as JSON, for machines.")
    ] = False,
    now: Annotated[
        datetime | None,
        typer.Option(
            "--now",
            formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
            help="Judge as at this UTC instant (default: now), e.g. to replay a morning.",
        ),
    ] = None,
) -> None:
    """The data's range, the last night's steps, the production model, Redis, the source's
    mark and the late days on one screen. Exit 0 all well, 30 warnings, 40 something wrong."""
    from churn.status import show_status
    from feature_repo.redis_server import online_store

    at = _utc(now) or datetime.now(UTC)
    settings = online_store(_settings(), say=lambda _: None)  # its Redis line says which
    raise typer.Exit(show_status(settings, at, console, as_json=as_json))


@app.command("env")
def env(
    reveal: Annotated[
        bool,
        typer.Option(
            "--reveal",
            help="Export the values that hold a password too, for eval only: "
            'eval "$(churn env --reveal)" (the activate line and make feast run that).',
        ),
    ] = False,
) -> None:
    """Show the settings as shell exports; for plain `feast`: eval "$(churn env --reveal)".

    A value holding a password (CHURN_SOURCE, a Redis or registry URL) shows it as *** in a
    comment, which eval does not export (the stars must not replace the real value);
    --reveal exports it. The API token is never exported: plain Feast does not read it.
    """
    from feature_repo.config import feast_environment

    settings = _settings()
    real, shown = feast_environment(settings), feast_environment(settings, redacted=True)
    for key in sorted(real):
        if key == "CHURN_API_TOKEN":
            note = "the API's token, never exported (plain Feast does not read it)"
        elif shown[key] != real[key] and not reveal:
            note = "holds a password: not exported (churn env --reveal exports it)"
        else:
            print(f"export {key}={shlex.quote(real[key])}")
            continue
        if real[key]:  # a comment: repr() keeps a newline in the value from ending it
            print(f"# {key}={shown[key]!r}: {note}")


@app.command("demo")
def demo(
    users: Annotated[int, typer.Option(min=1, help="Number of demo users.")] = DEMO_USERS,
    days: Annotated[
        int, typer.Option(min=1, help="Days of history, ending yesterday.")
    ] = DEMO_DAYS,
) -> None:
    """Demo data → gates → features → feast apply + materialize → train → promote → serve.

    At a terminal the API keeps serving until Ctrl-C; otherwise it stops after answering.
    """
    from churn.demo import run_demo

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    with _user_errors():
        code = run_demo(_settings(), users, days, console, interactive=interactive)
    raise typer.Exit(code)


@app.command("outreach-demo")
def outreach_demo(
    effect: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1,
            help="Cut of a contacted user's daily churn hazard for the horizon (default: "
            "CHURN_OUTREACH_EFFECT, 0 unless set).",
        ),
    ] = None,
    nights: Annotated[int, typer.Option(min=1, help="Lists, a horizon apart.")] = 3,
    users: Annotated[int, typer.Option(min=1, help="Number of demo users.")] = DEMO_USERS,
    days: Annotated[int, typer.Option(min=1, help="Days of history, ending yesterday.")] = 150,
) -> None:
    """The holdout experiment on a simulated portal: lists a horizon apart, outreach that cuts
    the contacted users' churn hazard by EFFECT, then the uplift report against the truth."""
    from churn.outreach_demo import print_run, simulate_outreach

    settings = _settings()
    effect = settings.outreach_effect if effect is None else effect
    log = StageLog(console)
    with _user_errors():
        run = simulate_outreach(settings, users, days, nights, effect, log)
    console.print(log.table("outreach demo"))
    print_run(run, console)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@app.command("forget")
def forget(
    user_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="USER_ID…",
            help="The learners' ids, as the portal stores them.",
            show_default=False,
        ),
    ] = None,
    ids_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A file of ids, one a line, read besides USER_ID… (keeps them out of the "
            "shell's history and the process list).",
        ),
    ] = None,
) -> None:
    """Erase learners (GDPR Art. 17) from raw, validated, the daily tables, the features,
    Redis, the predictions and the outreach lists; say which models saw them. Recorded as
    keyed hashes, so that no later ingest brings them back."""
    from churn.erasure import clean_ids, print_report
    from churn.erasure import forget as erase
    from ingestion.validate import ValidationRunning

    settings = _settings()
    given = list(user_ids or [])
    if ids_file is not None:
        given += [
            line for line in ids_file.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    with _user_errors():
        ids = clean_ids(given)
    settings = _online_settings(settings)  # unreachable: the files are erased, the report says
    with _user_errors():
        try:
            report = erase(settings, ids)
        except ValidationRunning as exc:
            console.print(f"[red]{type(exc).__name__}:[/red] {exc}")
            raise typer.Exit(1) from exc
    # The command's own confirmation is the one place the ids are shown.
    console.print(f"Forgot {len(ids):,} learner(s): {', '.join(ids)}")
    print_report(report, console)
    if not report.complete:
        raise typer.Exit(1)
