"""`churn bootstrap` for real, as Kubernetes' prod Job runs it, on a portal database.

The prod overlay is rendered with kustomize; its bootstrap container's command runs here,
in the pod's environment (the ConfigMap, the container's values, the Secret's values this
test gives: CHURN_SOURCE names a PostgreSQL database of the test's own, seeded with a demo
world), the pod's paths mapped into the test's tmp dir. The first model must be built on the
source's users and events, not on generated ones. The world is small (300 users), so the
gate's verdict is not what is tested: either it promotes (and Redis is loaded) or it refuses
and the bootstrap says how to force a model; both prove the path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
import yaml

from core.settings import get_settings
from feature_repo.store import open_store
from ingestion import raw_store
from ingestion.generate import DemoWorld, contract_users, source_event_days
from ingestion.postgres_source import seed_portal
from served import registry
from tests.deploy.test_k8s import K8S, kustomize, pod_environment

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not on PATH"),
]

# A fixed world: nothing here depends on the date. 120 days: training needs validation,
# embargo (the horizon) and calibration days before any fit day.
USERS, DAYS, START = 300, 120, date(2026, 1, 1)
STEPS = ["data ingest", "data validate", "data prepare", "features build", "features apply",
         "train", "promote", "features materialize"]  # fmt: skip


@pytest.fixture
def portal(database: str, tmp_path: Path) -> str:
    """The test's own database, seeded as a portal's (tables users and events)."""
    world = DemoWorld(n_users=USERS, days=DAYS, seed=42, start=START)
    seeder = get_settings(data_dir=tmp_path / "seeder", artifacts_dir=tmp_path / "seeder")
    assert seed_portal(seeder, database, contract_users(world), source_event_days(world))
    return database


def test_prod_bootstrap_backfills_the_source_and_generates_nothing(portal, redis_url, tmp_path):
    objects = [doc for doc in yaml.safe_load_all(kustomize(K8S / "overlays" / "prod")) if doc]
    secrets = {"CHURN_REDIS_URL": redis_url, "CHURN_SOURCE": portal, "CHURN_SOURCE_PASSWORD": ""}
    command, env = pod_environment(objects, "churn-bootstrap", secrets, tmp_path)
    project = f"churntest_{uuid.uuid4().hex[:10]}"
    env |= {
        "CHURN_FEAST_PROJECT": project,  # Redis keys of its own, removed after
        "CHURN_PUSHGATEWAY_URL": "",  # no Pushgateway Service here
        "CHURN_MAX_EVENT_AGE_HOURS": "0",  # the world's fixed days are long past
        "CHURN_TUNING_BUDGET": "1",  # the defaults only: the path is tested, not the tuning
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "OMP_NUM_THREADS": "1",
    }
    settings = get_settings(data_dir=env["CHURN_DATA_DIR"], artifacts_dir=env["CHURN_ARTIFACTS_DIR"],
                            redis_url=redis_url, feast_project=project)  # fmt: skip
    try:
        result = subprocess.run(command, env=env, cwd=env["HOME"], capture_output=True,
                                text=True, timeout=900, check=False)  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode in (0, 3), output[-3000:]

        # The source's users and events, all of them, and nothing simulated.
        with psycopg.connect(portal) as conn:
            source_users = sorted(str(r[0]) for r in conn.execute("SELECT user_id FROM users"))
            (source_events,) = conn.execute("SELECT count(*) FROM events").fetchone()
        raw_users = pq.read_table(raw_store.users_path(settings)).column("user_id").to_pylist()
        validated = pq.read_table(settings.validated_users_path).column("user_id").to_pylist()
        assert sorted(raw_users) == sorted(validated) == source_users and len(source_users) == USERS
        assert raw_store.read_events(settings).num_rows == source_events > 0
        assert not settings.ground_truth_dir.exists()  # the generator's hidden state: none
        assert "data generate" not in output and "a backfill from CHURN_SOURCE" in output

        # Every step in order, up to the gate and through it when it promotes.
        ran = [line.split("→ churn ", 1)[1] for line in output.splitlines() if "→ churn " in line]
        assert [step.split(" --")[0] for step in ran] == STEPS[: len(ran)]
        candidates = {c["version"] for c in registry.list_versions(settings.models_dir)}
        assert candidates, "train registered no model"
        production = registry.production(settings.models_dir)
        if result.returncode == 0:
            assert len(ran) == len(STEPS) and production in candidates
            assert "bootstrap: done; a production model is promoted" in output
        else:
            assert len(ran) == STEPS.index("promote") + 1  # stopped at the gate
            assert production is None
            assert "the gate refused the first model" in output
            assert "churn promote --force --version VERSION" in output
    finally:
        if settings.registry_path.exists() or settings.feast_registry_url:
            open_store(settings).teardown()
