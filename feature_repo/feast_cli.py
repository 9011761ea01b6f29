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


def feast_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``feast`` CLI in the feature repo with these settings in its environment.

    ``feast apply`` imports the repo's modules by top-level names after a
    ``chdir``; a subprocess keeps that out of our process and is exactly what
    users run.
    """
    settings.registry_path.parent.mkdir(parents=True, exist_ok=True)
    feast = Path(sys.executable).with_name("feast")
    result = subprocess.run(
        [str(feast), *args],
        cwd=REPO_DIR,
        env=os.environ | feast_environment(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise FeastCommandError(f"feast {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def apply_definitions(settings: Settings) -> str:
    """``feast plan`` then ``feast apply``; returns what Feast printed."""
    plan = feast_cli(settings, "plan").stdout
    applied = feast_cli(settings, "apply").stdout
    return plan + applied
