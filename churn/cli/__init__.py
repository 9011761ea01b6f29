"""The ``churn`` command line: one sub-command per stage, each a thin call into a function.

One module per Typer sub-app (``data``, ``features``, ``batch``, ``monitor``) and per group
of top-level commands (``model``, ``operations``, ``demos``, ``forget``), assembled here in
the order ``churn --help`` lists them; ``startup`` holds the root ``app`` and what every
command starts with, ``options`` the flags several commands share.
"""

from __future__ import annotations

from churn.cli.batch import batch_app
from churn.cli.data import data_app
from churn.cli.demos import demo_commands
from churn.cli.features import features_app
from churn.cli.forget import forget_commands
from churn.cli.model import model_commands
from churn.cli.monitor import monitor_app
from churn.cli.operations import operations_commands
from churn.cli.options import DEMO_DAYS, DEMO_USERS
from churn.cli.startup import app

# Unnamed: their commands join churn's own (churn train, churn nightly, ...).
for commands in (model_commands, operations_commands, demo_commands, forget_commands):
    app.add_typer(commands)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(batch_app, name="batch")
app.add_typer(monitor_app, name="monitor")

__all__ = ["DEMO_DAYS", "DEMO_USERS", "app"]
