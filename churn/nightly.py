"""``churn nightly``: the night's stages in order; ``churn schedule`` runs it on a cron schedule.

Each step is the stage's ``churn`` command (``churn.stages``), in a process of its own: the
same code, exit codes and job metrics whichever way the night is run. The chain stops at
the first failed step, so no later step runs on inputs that step failed to make (no
scoring on features that failed to build); drift and skew findings are exit codes of their
own, not failures. The night pushes which step stopped it (``churn_nightly_failed_step``),
so an alert names the step even when it failed before it could push anything itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from cronsim import CronSim
from rich.console import Console

from churn.stages import Stage, StageInputs, night
from core.history import append_record
from core.push import Sample, job_name, push
from core.settings import Settings
from core.timeline import day_of
from monitor.jobs import push_run, run_samples

JOB = "nightly"
FAILED_STEP = "churn_nightly_failed_step"


def nightly_steps(
    settings: Settings, day: date, portal: tuple[Path, Path] | None = None
) -> list[tuple[Stage, list[str]]]:
    """Each stage of the night that follows ``day`` (the day just ended), with its command.

    Every dated step is pinned to ``day``, not to the clock: a night re-run after the next
    midnight still loads and scores the features of ``day`` (stamped ``day`` + 1 00:00).
    Materialize reloads the view-TTL window (not ``--incremental``): a day built late or
    rebuilt after a fix reaches Redis as well. With ``portal`` (users and events files),
    the portal's export is ingested first; else, with CHURN_SOURCE set, what is new there.
    """
    inputs = StageInputs.night(settings, day, portal)
    return [(stage, stage.argv(inputs)) for stage in night(portal, settings.source is not None)]


def run_nightly(
    settings: Settings,
    day: date,
    console: Console,
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    portal: tuple[Path, Path] | None = None,
) -> int:
    """Run the night's steps; the exit code of the first failed step, else 0."""
    churn = str(Path(sys.executable).with_name("churn"))
    env = os.environ | settings.as_env()
    started = time.time()
    steps = nightly_steps(settings, day, portal)
    ran: list[dict] = []
    for i, (stage, argv) in enumerate(steps):
        command = f"churn {' '.join(argv)}"
        console.print(f"[bold]→ {command}[/bold]")
        began = time.time()
        code = run([churn, *argv], env=env, check=False).returncode
        state = "done" if code == 0 else "finding" if code in stage.findings else "failed"
        ran.append({"step": stage.name, "exit_code": code, "state": state,
                    "seconds": round(time.time() - began, 1)})  # fmt: skip
        if state == "finding":
            console.print(
                f"[yellow]  {stage.findings[code]} (exit {code}); the night goes on[/yellow]"
            )
        elif state == "failed":
            skipped = ", ".join(s.name for s, _ in steps[i + 1 :]) or "nothing"
            console.print(f"[red]  {command} failed (exit {code}): the night stops at "
                          f"{stage.name}; not run: {skipped}[/red]", soft_wrap=True)  # fmt: skip
            ran += [{"step": s.name, "state": "not run"} for s, _ in steps[i + 1 :]]
            report_night(settings, day, started, ran, stage.name, code)
            return code
    report_night(settings, day, started, ran)
    return 0


def night_samples(day: date, failed: str | None = None, code: int = 0) -> list[Sample]:
    """The night's outcome: 1 labelled with the step that stopped it, or 0 when it completed."""
    help_ = "1: the last nightly run stopped at this step (exit code, day); 0: it completed"
    if failed is None:
        return [Sample(FAILED_STEP, 0.0, help_, {"day": day.isoformat()})]
    labels = {"step": failed, "exit_code": str(code), "day": day.isoformat()}
    return [Sample(FAILED_STEP, 1.0, help_, labels)]


def report_night(
    settings: Settings,
    day: date,
    started: float,
    steps: list[dict],
    failed: str | None = None,
    code: int = 0,
) -> None:
    """Record the night in the nights' history (``churn status`` reads its steps there) and
    push its run (success or failure, as every job's) and the step that stopped it."""
    finished = time.time()
    append_record(settings.nights_path, {
        "day": day.isoformat(), "exit_code": code, "stopped_at": failed, "steps": steps,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "finished_at": datetime.fromtimestamp(finished, UTC).isoformat(timespec="seconds"),
    })  # fmt: skip
    push_run(settings, JOB, run_samples(failed is None, started, finished))
    push(settings, job_name(JOB), night_samples(day, failed, code))


def next_run(cron: str, after: datetime) -> datetime:
    """The first time at or after ``after`` (UTC) that ``cron`` names."""
    return next(iter(CronSim(cron, after.astimezone(UTC))))


def run_schedule(
    settings: Settings, console: Console, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Forever: wait for the next ``CHURN_NIGHTLY_CRON`` time, run the night before it."""
    while True:
        at = next_run(settings.nightly_cron, datetime.now(UTC))
        console.print(f"next nightly run at {at:%Y-%m-%d %H:%M} UTC")
        while (left := (at - datetime.now(UTC)).total_seconds()) > 0:
            sleep(min(left, 60.0))  # short naps: a changed clock is noticed within a minute
        code = run_nightly(settings, day_of(at), console)
        console.print(f"nightly run of {at:%Y-%m-%d} ended with exit {code}")
