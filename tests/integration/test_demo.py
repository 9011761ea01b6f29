"""`make demo`'s function end to end on a small portal: every stage, then the gate."""

from __future__ import annotations

import re

import pytest
from rich.console import Console

from churn.demo import run_demo
from feature_repo.store import open_store
from training import registry

pytestmark = pytest.mark.integration


def test_demo_runs_every_stage_through_the_gate(tmp_path, isolated_settings):
    settings = isolated_settings(tmp_path, max_event_age_hours=48)  # the demo's own gate
    console = Console(record=True, width=120)
    try:
        code = run_demo(settings, users=300, days=120, console=console)
        output = console.export_text()
        assert code == 0, output
        # Both models registered and the gate decided (on 300 users either way is honest).
        assert len(registry.list_versions(settings.models_dir)) == 2
        assert "promoted " in output or "refused " in output
        assert "users in the online store" in output
        # The demo serves the model and asks it about two users, as its curl lines do.
        assert len(re.findall(r"curl -s localhost:\d+/users/u\d+/churn-risk", output)) == 2
        assert len(re.findall(r"→ churn_risk 0\.\d{3} \((low|medium|high)\)", output)) == 2
        assert "the server stops here" in output
    finally:
        open_store(settings).teardown()
