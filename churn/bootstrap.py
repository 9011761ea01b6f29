"""``churn bootstrap``: a stack's first start, the one compose's ``bootstrap`` service and
Kubernetes' ``churn-bootstrap`` Job both run.

data → validate → prepare → features build → feast apply → train → promote → materialize,
so the API has a model to serve and features to read. Each step is its ``churn`` command
in a process of its own (``churn.stages``), as in ``churn nightly``: the same output, exit
codes and job metrics as by hand. Once a production model exists (a restarted stack, its
volumes kept) it changes no data and no model: it re-applies the Feast definitions and
reloads Redis.

The data of the first model is chosen, in this order: a folder of the portal's export
(``users.parquet|csv`` and ``events.parquet|csv``), else ``CHURN_SOURCE`` read whole (the
backfill), else demo data, only when asked for: a production stack never trains and
promotes a model on simulated users because nobody said where the real ones are.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from rich.console import Console

from churn.stages import STAGES, Stage, StageInputs
from core.redaction import redact
from core.settings import Settings

# The variables of the command's options (churn/cli/operations.py; core.settings.NOT_SETTINGS lists
# them with CHURN_BOOTSTRAP_USERS and _DAYS), named in the messages.
DATA_VARIABLE = "CHURN_BOOTSTRAP_DATA"
DEMO_VARIABLE = "CHURN_BOOTSTRAP_DEMO"
EXPORT_SUFFIXES = ("parquet", "csv")  # Parquet preferred when a folder holds both
PROMOTE_REFUSED = 3  # `churn promote`'s exit code when the gate refuses
FIRST_BUILD = ("validate", "prepare", "features", "apply", "train", "promote", "materialize")
RELOAD = ("apply", "materialize")


class NoBootstrapData(ValueError):
    """Nothing to build the first model on, or an export folder without its files; the
    message is one line naming what to set."""


@dataclass(frozen=True)
class DataChoice:
    """Where the first model's data comes from: the portal's export files, its source
    (``CHURN_SOURCE``), or a demo world of ``users`` over ``days`` ending yesterday."""

    kind: Literal["files", "source", "demo"]
    portal: tuple[Path, Path] | None = None
    users: int = 0
    days: int = 0

    def describe(self, settings: Settings) -> str:
        """One line for the log, passwords hidden."""
        if self.kind == "files":
            assert self.portal is not None  # choose_data gives "files" with its two files
            return f"the portal's export: {self.portal[0]} and {self.portal[1]}"
        if self.kind == "source":
            url = settings.source.get_secret_value() if settings.source else ""
            return f"a backfill from CHURN_SOURCE ({redact(url)})"
        return f"demo data, {self.users:,} simulated users over {self.days} days (asked for)"


def export_file(folder: Path, table: str) -> Path | None:
    """``folder``'s file of ``table`` (``users`` or ``events``), Parquet preferred; None."""
    for suffix in EXPORT_SUFFIXES:
        if (path := folder / f"{table}.{suffix}").is_file():
            return path
    return None


def choose_data(
    settings: Settings, folder: Path | None, demo: bool, users: int, days: int
) -> DataChoice:
    """The first model's data: ``folder``'s export, else ``CHURN_SOURCE``, else a demo world
    when ``demo`` asks for one; ``NoBootstrapData`` when none of them is given, or when
    ``folder`` lacks its files (a folder given by mistake must not fall back to anything)."""
    if folder is not None:
        found = {table: export_file(folder, table) for table in ("users", "events")}
        users_file, events_file = found["users"], found["events"]
        if users_file is None or events_file is None:
            missing = " and ".join(f"{t}.parquet|csv" for t, path in found.items() if path is None)
            held = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else None
            where = "is not a folder" if held is None else f"holds {', '.join(held) or 'nothing'}"
            raise NoBootstrapData(f"{DATA_VARIABLE}={folder} needs {missing}; it {where}")
        return DataChoice("files", (users_file, events_file))
    if settings.source is not None:
        return DataChoice("source")
    if demo:
        return DataChoice("demo", users=users, days=days)
    raise NoBootstrapData(
        f"nothing to build the first model on: set {DATA_VARIABLE} to a folder of the "
        "portal's users.parquet|csv and events.parquet|csv, or CHURN_SOURCE to its database "
        f"or landing folder, or ask for demo data with {DEMO_VARIABLE}=true (--demo)"
    )


def bootstrap_steps(
    settings: Settings, choice: DataChoice | None, now: datetime
) -> list[tuple[Stage, list[str]]]:
    """Each step with its ``churn`` arguments: the first build on ``choice``, or with
    ``choice`` None (a production model exists) only apply and materialize. ``now`` is the
    clock of the demo's days (ending the day before it) and of materialize's end."""
    if choice is None:
        names: tuple[str, ...] = RELOAD
    else:
        names = ("generate" if choice.kind == "demo" else "ingest", *FIRST_BUILD)
    inputs = StageInputs(settings, now, portal=choice.portal if choice else None,
                         users=choice.users if choice else 0,
                         days=choice.days if choice else 0)  # fmt: skip
    return [(STAGES[name], STAGES[name].argv(inputs)) for name in names]


def run_bootstrap(
    settings: Settings,
    console: Console,
    folder: Path | None = None,
    demo: bool = False,
    users: int = 0,
    days: int = 0,
    now: datetime | None = None,
    run: Callable[..., subprocess.CompletedProcess] | None = None,
) -> int:
    """Bring the stack up to a served model; the exit code of the first failed step, else 0.

    ``NoBootstrapData`` (before any step runs) when there is no data to start from. ``run``
    starts each step's command (default ``subprocess.run``, looked up at the call).
    """
    from served.registry import production  # light: the index files only

    now = now or datetime.now(UTC)
    run = run or subprocess.run
    say = lambda text: console.print(text, soft_wrap=True)  # noqa: E731  one line in a log
    version = production(settings.models_dir)
    if version is not None:
        say(f"bootstrap: production model {version} exists: re-applying the Feast definitions "
            "and reloading Redis only (no data or model changes)")  # fmt: skip
        choice = None
    else:
        choice = choose_data(settings, folder, demo, users, days)
        say(f"bootstrap: no production model yet; first model from {choice.describe(settings)}")
    churn = str(Path(sys.executable).with_name("churn"))
    env = os.environ | settings.as_env()
    steps = bootstrap_steps(settings, choice, now)
    for i, (stage, argv) in enumerate(steps, 1):
        command = f"churn {' '.join(argv)}"
        say(f"[bold]bootstrap {i}/{len(steps)}: {stage.title} → {command}[/bold]")
        code = run([churn, *argv], env=env, check=False).returncode
        if code == 0:
            continue
        if stage.name == "promote" and code == PROMOTE_REFUSED:
            say(refusal_advice())
        else:
            say(f"[red]bootstrap: {command} failed (exit {code}); nothing after {stage.name} "
                "ran: fix it and run the bootstrap again[/red]")  # fmt: skip
        return code
    done = "reloaded" if choice is None else "a production model is promoted and Redis is loaded"
    say(f"[green]bootstrap: done; {done}[/green]")
    return 0


def refusal_advice() -> str:
    """What an operator reads when the gate refuses the first model: why nothing is served,
    and how to serve a candidate anyway."""
    return (
        "[red]bootstrap: the gate refused the first model (its reasons above): the API has "
        "nothing to serve.[/red] To serve a candidate anyway, as an operator's decision: "
        'churn promote --force --version VERSION --reason "first model" (compose: docker '
        "compose run --rm bootstrap churn promote …; Kubernetes: deploy/k8s/README.md), "
        "then run the bootstrap again: it reloads Redis."
    )
