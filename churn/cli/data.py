"""``churn data``: raw data in (generated, or ingested from files or the source), validated,
prepared into the daily table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from churn.cli.options import DEMO_DAYS, DEMO_USERS, Day, DeprecatedAsOfDay, as_day, day_flag
from churn.cli.startup import console, load_settings, user_errors
from churn.progress import StageLog
from churn.stages import STAGES, StageInputs
from core.settings import Settings
from monitor.jobs import ingest_samples, job_run, validation_samples

data_app = typer.Typer(
    help="Raw data: generate or ingest, validate, prepare.", no_args_is_help=True
)


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

    settings = load_settings()
    if scenario not in SCENARIOS:
        raise typer.BadParameter(
            f"--scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}"
        )
    log = StageLog(console)
    with user_errors(), log.stage(STAGES["generate"].title, total=days) as progress:
        world = DemoWorld(
            n_users=users,
            days=days,
            seed=settings.seed if seed is None else seed,
            start=as_day(start),
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
    settings = load_settings()
    stage = STAGES["ingest"]
    log = StageLog(console)
    with user_errors(), job_run(settings, stage.name), log.stage(stage.title) as progress:
        if users_file and events_file:
            landed = ingest_files(users_file, events_file, settings)
        else:
            landed = ingest_from_source(settings, source, progress=progress, full=full)
        push(settings, stage.job, ingest_samples(landed))
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

    settings = load_settings()
    stage = STAGES["validate"]
    log = StageLog(console)
    with user_errors(), job_run(settings, stage.name):
        with log.stage(stage.title) as progress:
            try:
                report = run_validation(settings, full=full, progress=progress)
            except ValidationRunning as exc:
                console.print(f"[red]{type(exc).__name__}:[/red] {exc}")
                raise typer.Exit(1) from exc
        push(settings, stage.job, validation_samples(report))
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
    settings = load_settings()
    stage = STAGES["prepare"]
    log = StageLog(console)
    only = day_flag(day, as_of)
    with user_errors(), log.stage(stage.title) as progress:
        result = stage.run(StageInputs(settings, datetime.now(UTC), only, progress=progress))
    log.note(f"{result.rows:,} user-days, {result.first_day} … {result.last_day}")
