"""Plain Feast as docs/operations.md has a user run it: a fresh shell, ``. .venv/bin/activate``,
``cd feature_repo``, then ``feast plan && feast apply``, ``feast materialize-incremental``
and ``feast feature-views list``, with nothing exported by hand.

The activate script is a copy of this virtualenv's (found from ``sys.executable``, so the
suite runs from any checkout) given the line ``make install`` appends, by the same make
target, so the shared virtualenv is left as it is. The settings are the test's own data
dir, Feast project and Redis, in a churn.yaml named by ``CHURN_CONFIG_FILE``, as a user's
would be: the demo's registry and keys are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
import yaml

from core import partitions
from core.settings import Settings, get_settings
from feature_repo.spec import FEATURE_VIEW
from feature_repo.store import open_store
from tests.integration.world import TODAY, build_world

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def activate_script(tmp_path: Path) -> Path:
    """This venv's activate, with the settings line ``make install`` adds."""
    venv = Path(sys.executable).parent.parent
    copy = tmp_path / "venv"
    (copy / "bin").mkdir(parents=True)
    shutil.copy(venv / "bin" / "activate", copy / "bin" / "activate")
    (copy / "bin" / "python").symlink_to(sys.executable)  # make's prerequisite: the venv exists
    subprocess.run(
        ["make", "-s", "-C", str(ROOT), "activate-settings", f"VENV={copy}"],
        check=True,
        capture_output=True,
    )
    return copy / "bin" / "activate"


def newest_rows(settings: Settings, stamped: datetime) -> dict[str, int]:
    """``tenure_days`` of every user whose feature row is stamped ``stamped``."""
    glob = partitions.table_glob(settings.features_path)
    rows = duckdb.execute(
        f"SELECT user_id, tenure_days FROM read_parquet('{glob}', hive_partitioning = true) "
        "WHERE event_timestamp = ?",
        [stamped],
    ).fetchall()
    return dict(rows)


def test_the_readme_feast_lines_work_in_a_fresh_shell(tmp_path, isolated_settings, monkeypatch):
    settings = isolated_settings(tmp_path)
    config = tmp_path / "churn.yaml"
    fields = ("data_dir", "artifacts_dir", "redis_url", "feast_project", "max_event_age_hours",
              "tuning_budget")  # fmt: skip
    config.write_text(yaml.safe_dump({f: str(getattr(settings, f)) for f in fields}))
    monkeypatch.setenv("CHURN_CONFIG_FILE", str(config))
    assert get_settings() == settings  # the file says what the churn CLI uses
    # Up to today: the first materialize-incremental starts one view TTL before now.
    build_world(settings, users=60, days=30, end=TODAY, online=False)  # `churn features apply`
    script = (
        f". {activate_script(tmp_path)} && cd {ROOT / 'feature_repo'}"
        " && feast plan && feast apply"
        " && feast materialize-incremental $(date -u +%Y-%m-%dT%H:%M:%S)"
        " && feast feature-views list"
    )
    environment = [
        f"HOME={tmp_path}",
        "PATH=/usr/bin:/bin",
        f"CHURN_CONFIG_FILE={config}",
        # The code of this checkout, which the venv's editable install may not point at.
        f"PYTHONPATH={ROOT}",
        # make test-clock's moved clock (libfaketime) holds in the fresh shell too.
        *(f"{k}={v}" for k, v in os.environ.items() if k == "LD_PRELOAD" or "FAKETIME" in k),
    ]
    try:
        result = subprocess.run(
            ["env", "-i", *environment, "bash", "-c", script],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1].split()[0] == FEATURE_VIEW, result.stdout
        store = open_store(settings)
        # Plain `feast apply` registered the source under the settings' data dir ...
        assert store.get_feature_view(FEATURE_VIEW).batch_source.path == str(settings.features_path)
        # ... and materialized into the settings' Redis, under the settings' project.
        offline = newest_rows(settings, TODAY)
        assert offline, "no feature row stamped at the end: nothing to materialize"
        online = store.get_online_features(
            features=[f"{FEATURE_VIEW}:tenure_days"],
            entity_rows=[{"user_id": user} for user in offline],
        ).to_dict()
        assert dict(zip(online["user_id"], online["tenure_days"], strict=True)) == offline
    finally:
        open_store(settings).teardown()  # this project's keys and registry only
