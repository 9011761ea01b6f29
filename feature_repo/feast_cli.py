"""The ``feast`` CLI with our settings: ``feast plan`` and ``feast apply`` as users run them.

Apart from ``feature_repo.store`` because it needs no Feast in this process: the commands
that only report Feast's errors (every ``churn`` command does) do not pay Feast's import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.settings import Settings
from feature_repo.config import REPO_DIR, feast_environment


class FeastCommandError(RuntimeError):
    """A ``feast`` CLI call failed; the message carries what Feast printed."""


# ``feast plan`` then ``feast apply``: Feast's own click commands, one after the other in one
# interpreter, so that Feast is imported once (about 4 s) rather than once per command.
# A command that fails exits (SystemExit) or returns its exit code: apply never follows a
# failed plan.
PLAN_THEN_APPLY = """
import sys
from feast.cli.cli import cli
for command in (["plan"], ["apply"]):
    code = cli.main(command, prog_name="feast", standalone_mode=False)
    if isinstance(code, int) and code != 0:
        sys.exit(code)
"""


def feast_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``feast`` CLI in the feature repo with these settings in its environment.

    ``feast apply`` imports the repo's modules by top-level names after a
    ``chdir``; a subprocess keeps that out of our process and is exactly what
    users run.
    """
    feast = Path(sys.executable).with_name("feast")
    return _run(settings, [str(feast), *args], f"feast {' '.join(args)}")


def _run(settings: Settings, command: list[str], name: str) -> subprocess.CompletedProcess[str]:
    settings.registry_path.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        command,
        cwd=REPO_DIR,
        env=os.environ | feast_environment(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise FeastCommandError(f"{name} failed:\n{result.stdout}\n{result.stderr}")
    return result


def apply_definitions(settings: Settings) -> str:
    """``feast plan`` then ``feast apply``; returns what Feast printed."""
    return _run(
        settings, [sys.executable, "-c", PLAN_THEN_APPLY], "feast plan && feast apply"
    ).stdout
