"""``churn forget``: erase learners (GDPR Art. 17) everywhere the product keeps them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from churn.cli.startup import console, load_settings, online_settings, user_errors

# ``churn forget``, merged into ``churn``.
forget_commands = typer.Typer()


@forget_commands.command("forget")
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

    settings = load_settings()
    given = list(user_ids or [])
    if ids_file is not None:
        given += [
            line for line in ids_file.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    with user_errors():
        ids = clean_ids(given)
    settings = online_settings(settings)  # unreachable: the files are erased, the report says
    with user_errors():
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
