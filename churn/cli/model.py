"""The model's commands: ``churn train``, ``churn promote`` (the gate, or a restore) and
``churn serve`` (the API)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from churn.cli.startup import console, load_settings, online_settings, user_errors
from churn.progress import StageLog, training_table, tuning_table
from churn.stages import STAGES, StageInputs

# The top-level model commands, merged into ``churn`` (``churn.cli``).
model_commands = typer.Typer()


@model_commands.command("train")
def train() -> None:
    """Label, join features through Feast, train and calibrate both models, register them."""
    settings = load_settings()
    stage = STAGES["train"]
    log = StageLog(console)
    with user_errors(), log.stage(stage.title):
        result = stage.run(StageInputs(settings, datetime.now(UTC)))
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


@model_commands.command("promote")
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
    from served import registry
    from training import promote as promotion

    settings = load_settings()
    with user_errors():
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


@model_commands.command("serve")
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

    settings = online_settings()
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
