"""``churn nightly``: the night's jobs in order; ``churn schedule`` runs it on a cron schedule.

Each step is the ``churn`` command a person or a Kubernetes CronJob runs, in a process
of its own: the same code, exit codes and job metrics whichever way the night is run.
The chain stops at the first failed step (no scoring on features that failed to
build); drift and skew findings are exit codes of their own, not failures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cronsim import CronSim
from rich.console import Console

from churn.settings import Settings

# Exit codes that report what a step found, not that it failed.
FINDINGS = {("monitor", "drift"): {10: "drift warning", 20: "drift alert"},
            ("monitor", "skew"): {3: "online/offline mismatch"}}  # fmt: skip


def nightly_steps(day: date) -> list[list[str]]:
    """The ``churn`` commands of the night that follows ``day`` (the day just ended).

    Every dated step is pinned to ``day``, not to the clock: a night re-run after the next
    midnight still loads and scores the features of ``day`` (stamped ``day`` + 1 00:00).
    Materialize reloads the view-TTL window (not ``--incremental``): a day built late or
    rebuilt after a fix reaches Redis as well.
    """
    d, t = day.isoformat(), (day + timedelta(days=1)).isoformat()
    return [
        ["data", "validate"],
        ["data", "prepare", "--as-of", d],
        ["features", "build", "--as-of", d],
        ["features", "materialize", "--end", f"{t}T00:00:00"],
        ["batch", "score", "--as-of", t],
        ["monitor", "drift"],
        ["monitor", "outcomes"],
        ["monitor", "skew"],
        ["monitor", "retrain-if-needed"],
    ]


def run_nightly(
    settings: Settings,
    day: date,
    console: Console,
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> int:
    """Run the night's steps; the exit code of the first failed step, else 0."""
    churn = str(Path(sys.executable).with_name("churn"))
    env = os.environ | settings.as_env()
    for step in nightly_steps(day):
        console.print(f"[bold]→ churn {' '.join(step)}[/bold]")
        code = run([churn, *step], env=env, check=False).returncode
        finding = FINDINGS.get(tuple(step[:2]), {}).get(code)
        if finding:
            console.print(f"[yellow]  {finding} (exit {code}); the night goes on[/yellow]")
        elif code != 0:
            console.print(f"[red]  churn {' '.join(step)} failed (exit {code}); stopping[/red]")
            return code
    return 0


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
        code = run_nightly(settings, at.date() - timedelta(days=1), console)
        console.print(f"nightly run of {at:%Y-%m-%d} ended with exit {code}")
