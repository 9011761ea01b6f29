"""Running the product: ``churn nightly`` (the night's stages once), ``bootstrap`` (a
stack's first start), ``schedule``, ``status`` and ``env``."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from churn.cli.options import DEMO_DAYS, DEMO_USERS, as_day, utc
from churn.cli.startup import console, load_settings, online_settings, user_errors
from core.timeline import day_of

# The top-level commands that run the product, merged into ``churn``.
operations_commands = typer.Typer()


@operations_commands.command("nightly")
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
    settings = online_settings()
    yesterday = day_of(datetime.now(UTC))
    raise typer.Exit(run_nightly(settings, as_day(day) or yesterday, console, portal=portal))


@operations_commands.command("bootstrap")
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

    settings = load_settings()
    with user_errors():
        try:
            code = run_bootstrap(settings, console, data, demo, users, days)
        except NoBootstrapData as exc:  # one line in a container's log, however wide
            console.print(f"[red]bootstrap:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(1) from exc
    raise typer.Exit(code)


@operations_commands.command("schedule")
def schedule() -> None:
    """Run `churn nightly` at every CHURN_NIGHTLY_CRON time (UTC), in the foreground."""
    from churn.nightly import run_schedule

    run_schedule(online_settings(), console)


@operations_commands.command("status")
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

    at = utc(now) or datetime.now(UTC)
    settings = online_store(load_settings(), say=lambda _: None)  # its Redis line says which
    raise typer.Exit(show_status(settings, at, console, as_json=as_json))


@operations_commands.command("env")
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

    settings = load_settings()
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
