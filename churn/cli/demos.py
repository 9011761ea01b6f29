"""The demos: ``churn demo`` (the whole pipeline on a generated portal, then serving) and
``churn outreach-demo`` (the holdout experiment on a simulated one)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from churn.cli.options import DEMO_DAYS, DEMO_USERS
from churn.cli.startup import console, load_settings, user_errors
from churn.progress import StageLog

# The demo commands, merged into ``churn``.
demo_commands = typer.Typer()


@demo_commands.command("demo")
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
    with user_errors():
        code = run_demo(load_settings(), users, days, console, interactive=interactive)
    raise typer.Exit(code)


@demo_commands.command("outreach-demo")
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

    settings = load_settings()
    effect = settings.outreach_effect if effect is None else effect
    log = StageLog(console)
    with user_errors():
        run = simulate_outreach(settings, users, days, nights, effect, log)
    console.print(log.table("outreach demo"))
    print_run(run, console)
