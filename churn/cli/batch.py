"""``churn batch``: the nightly batch, which scores everyone and writes the high-risk list."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from churn.cli.options import utc
from churn.cli.startup import console, load_settings, user_errors
from churn.progress import StageLog
from churn.stages import STAGES
from monitor.jobs import job_run

batch_app = typer.Typer(
    help="The nightly batch: score everyone, write the list.", no_args_is_help=True
)


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

    settings = load_settings()
    stage = STAGES["batch"]
    log = StageLog(console)
    with user_errors(), job_run(settings, stage.name), log.stage(stage.title) as progress:
        result = score_population(settings, utc(as_of), progress=progress)
    log.note(f"{result.scored:,} scored, {result.skipped:,} skipped → {result.output_dir}")
    print_batch(result, console)
    if settings.pushgateway_url and not result.pushed:
        console.print(
            "[yellow]job metrics were not pushed: the Pushgateway did not answer[/yellow]"
        )
