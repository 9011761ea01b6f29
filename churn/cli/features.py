"""``churn features``: the rolling-window features, their SQL, and the Feast store (apply,
materialize into Redis)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from churn.cli.options import Day, DeprecatedAsOfDay, day_flag, utc
from churn.cli.startup import console, load_settings, online_settings, user_errors
from churn.progress import StageLog
from churn.stages import STAGES, StageInputs
from monitor.jobs import job_run

features_app = typer.Typer(help="Rolling features and the Feast store.", no_args_is_help=True)


@features_app.command("build")
def features_build(day: Day = None, as_of: DeprecatedAsOfDay = None) -> None:
    """Compute the rolling-window features (the Feast offline store) from user_daily; with
    --day D, day D after every day since the oldest that received late events."""
    settings = load_settings()
    stage = STAGES["features"]
    log = StageLog(console)
    only = day_flag(day, as_of)
    with (
        user_errors(),
        job_run(settings, stage.name),
        log.stage(stage.title) as progress,
    ):
        result = stage.run(StageInputs(settings, datetime.now(UTC), only, progress=progress))
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

    settings = load_settings()
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
    settings = load_settings()
    stage = STAGES["apply"]
    log = StageLog(console)
    with user_errors(), log.stage(stage.title):
        output = stage.run(StageInputs(settings, datetime.now(UTC)))
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

    settings = online_settings()
    stage = STAGES["materialize"]
    lower_priority(settings.materialize_niceness)  # the API's requests first
    log = StageLog(console)
    with (
        user_errors(),
        job_run(settings, stage.name),
        log.stage(stage.title) as progress,
    ):
        since, until = materialize(
            settings, end=utc(end), start=utc(start), incremental=incremental, progress=progress
        )
        push(settings, stage.job, [online_freshness(settings, until)], replace=False)
    loaded = "since the last run" if since is None else f"from {since:%Y-%m-%d %H:%M}"
    log.note(f"online store loaded {loaded} to {until:%Y-%m-%d %H:%M} UTC")
