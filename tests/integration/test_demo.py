"""`make demo`'s function end to end: the default world through the gate to two answers, and
a refusal that names the failed floor and the command that serves anyway."""

from __future__ import annotations

import re
import shlex

import pytest
from rich.console import Console
from typer.testing import CliRunner

from churn.cli import DEMO_DAYS, DEMO_USERS, app
from churn.demo import run_demo
from core.settings import Settings
from feature_repo.store import open_store
from served import registry
from tests.conftest import PRODUCT_TUNING_BUDGET

pytestmark = pytest.mark.integration
DEMO_FRESHNESS = Settings.model_fields["max_event_age_hours"].default  # the demo's own gate
# The line the demo prints under each curl: the risk, its band, whether the user is on the
# newest night's list and, only then, their arm.
ANSWER = re.compile(
    r"→ churn_risk 0\.\d{3} \((low|medium|high)\), "
    r"listed (true, arm (contact|holdout)|false, arm null);"
)


def test_make_demo_promotes_and_serves_the_default_world(tmp_path, isolated_settings):
    """The world `make demo` runs (the same data on every date), tuned as the demo tunes,
    passes the gate and serves."""
    settings = isolated_settings(
        tmp_path, max_event_age_hours=DEMO_FRESHNESS, tuning_budget=PRODUCT_TUNING_BUDGET
    )
    console = Console(record=True, width=120)
    try:
        code = run_demo(settings, users=DEMO_USERS, days=DEMO_DAYS, console=console)
        output = console.export_text()
        assert code == 0, output
        assert len(registry.list_versions(settings.models_dir)) == 2
        assert re.search(r"promoted \d{8}T\d{6}Z-\w+", output), output
        assert "fail:" not in output
        assert f"{DEMO_USERS:,} users in the online store" in output
        # The demo serves the model and asks it about two users, as its curl lines do.
        assert len(re.findall(r"curl -s localhost:\d+/users/u\d+/churn-risk", output)) == 2
        assert len(ANSWER.findall(output)) == 2
        assert "the server stops here" in output
    finally:
        open_store(settings).teardown()


def test_a_refused_demo_names_the_floor_and_the_command_that_serves_it(tmp_path, isolated_settings):
    # No model reaches a ROC-AUC of 0.99 on the demo world: the hidden engagement that
    # drives churn ranks at about 0.95 itself (the oracle reference), so the gate refuses.
    settings = isolated_settings(tmp_path, max_event_age_hours=DEMO_FRESHNESS, min_roc_auc=0.99)
    console = Console(record=True, width=200)
    try:
        code = run_demo(settings, users=300, days=DEMO_DAYS, console=console)
        output = console.export_text()
        assert code == 1, output  # `make demo` fails: no script takes this for a served demo
        assert re.search(r"The gate refused \S+: ROC-AUC 0\.\d{3} < floor 0\.990", output), output
        assert "Nothing is served" in output
        assert "curl" not in output
        assert registry.production(settings.models_dir) is None

        command = re.search(r"^\s*(churn promote --force .*)$", output, re.MULTILINE)
        assert command, output
        args = shlex.split(command.group(1))[1:]
        version = args[args.index("--version") + 1]
        assert version in {v["version"] for v in registry.list_versions(settings.models_dir)}
        result = CliRunner().invoke(app, args, env=settings.as_env())
        assert result.exit_code == 0, result.output
        assert registry.production(settings.models_dir) == version

        # A second demo in the same place: its candidate is refused too, but there is a
        # production model now, and that one serves.
        console = Console(record=True, width=200)
        code = run_demo(settings, users=300, days=DEMO_DAYS, console=console)
        output = console.export_text()
        assert code == 0, output
        assert f"production stays {version}" in output
        assert len(ANSWER.findall(output)) == 2
    finally:
        open_store(settings).teardown()
