"""`churn forget` end to end on a served world: a learner scored, listed and in a model's
validation rows is forgotten; the running API answers 404 for them, no file under the data,
artifacts and export dirs names them, nor any Redis key, and the next ingest of the same source
data, and the next materialize, do not bring them back."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import redis
from fastapi.testclient import TestClient
from feast.infra.online_stores.helpers import _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from batch.export import LATEST_FILE, MANIFEST_FILE
from batch.job import score_population
from batch.outputs import HIGH_RISK_FILE, batch_dir
from core.history import read_records
from feature_repo.online_erasure import forget_online
from feature_repo.redis_server import start_redis_server
from feature_repo.spec import ENTITY_KEY
from feature_repo.store import materialize, open_store, repo_config
from ingestion import raw_store
from ingestion.erasure_record import record_path
from ingestion.ingest import ingest_files
from ingestion.validate import run_validation
from online_api.app import create_app
from tests.integration.services import free_port, installed, wait_until
from tests.integration.world import TODAY, copy_world
from training.promote import force
from training.train import VALIDATION_ROWS

pytestmark = pytest.mark.integration

CHURN = Path(sys.executable).with_name("churn")
# A database of this test's own on the test Redis (besides its own Feast project): the scan
# for the learner's keys then walks only this test's keys.
REDIS_DB = 5


def own_database(url: str) -> str:
    return urlsplit(url)._replace(path=f"/{REDIS_DB}").geturl()


@pytest.fixture(scope="module")
def world(tmp_path_factory, isolated_settings, redis_url, trained_world):
    """The shared world served: features in Redis, a production model, tonight's batch and
    list, delivered to an export dir outside the data dir (as a mounted volume is); the raw
    tables exported as the portal's files, to ingest again after the erasure."""
    tmp = tmp_path_factory.mktemp("erasure")
    settings = isolated_settings(tmp, redis_url=own_database(redis_url), export_dir=tmp / "outbox")
    try:
        trained = copy_world(trained_world, settings)
        force(settings, trained.versions[trained.best], "erasure test")
        score_population(settings, as_of=TODAY)
        source = tmp / "portal"
        source.mkdir()
        pq.write_table(pq.read_table(raw_store.users_path(settings)), source / "users.parquet")
        pq.write_table(raw_store.read_events(settings), source / "events.parquet")
        yield settings, trained, source
    finally:
        open_store(settings).teardown()


def listed_and_validated(settings, version: str) -> str:
    """A learner on tonight's list whose rows the version's validation file holds."""
    with (batch_dir(settings.predictions_dir, TODAY.date()) / HIGH_RISK_FILE).open() as handle:
        on_list = {row[ENTITY_KEY] for row in csv.DictReader(handle)}
    validated = set(pq.read_table(settings.models_dir / version / VALIDATION_ROWS)[ENTITY_KEY]
                    .to_pylist())  # fmt: skip
    both = sorted(on_list & validated)
    assert both, "the world has no listed learner with validation rows"
    return both[0]


def files_naming(settings, user: str) -> list[Path]:
    """Every file under the data, artifacts and export dirs that names ``user``: a Parquet
    file by any of its string columns, any other file by its bytes."""
    found = []
    for root in (settings.data_dir, settings.artifacts_dir, settings.export_dir):
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.suffix == ".parquet":
                table = pq.ParquetFile(path).read()
                strings = [c for c, t in zip(table.column_names, table.schema.types, strict=True)
                           if pa.types.is_string(t) or pa.types.is_large_string(t)]  # fmt: skip
                if any(pc.any(pc.equal(table[c], user)).as_py() for c in strings):
                    found.append(path)
            elif user.encode() in path.read_bytes():
                found.append(path)
    return found


def churn(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHURN, *args], env=os.environ | settings.as_env(),
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_a_forgotten_learner_is_gone_everywhere_and_stays_gone(world):
    settings, trained, source = world
    best = trained.versions[trained.best]
    user = listed_and_validated(settings, best)
    assert files_naming(settings, user), "the world names the learner before the erasure"
    assert user.encode() in (settings.export_dir / LATEST_FILE).read_bytes()
    client_redis = redis.Redis.from_url(settings.redis_url)
    assert list(client_redis.scan_iter(match=f"*{user}*".encode()))

    with TestClient(create_app(settings)) as api:
        assert api.get(f"/users/{user}/churn-risk").json()["status"] == "scored"

        forgot = churn(settings, "forget", user)

        assert forgot.returncode == 0, forgot.stdout + forgot.stderr
        # The command's confirmation is the one place the id shows; no log line names it.
        assert forgot.stdout.count(user) == 1 and f"Forgot 1 learner(s): {user}" in forgot.stdout
        assert user not in forgot.stderr
        assert api.get(f"/users/{user}/churn-risk").status_code == 404

    assert files_naming(settings, user) == []
    assert list(client_redis.scan_iter(match=f"*{user}*".encode())) == []
    (line,) = read_records(record_path(settings))
    assert len(line["users"]) == 1 and user not in str(line)
    for place in ("raw events", "raw users", "validated events", "validated users", "user_daily",
                  "features", "predictions", "outreach assignments", "ground truth",
                  "model validation rows", "exported lists"):  # fmt: skip
        assert line["removed"][place]["rows"] > 0, place
    # The manifest describes the scrubbed latest list: a consumer's check of it still holds.
    manifest = json.loads((settings.export_dir / MANIFEST_FILE).read_text())
    latest = (settings.export_dir / LATEST_FILE).read_bytes()
    assert manifest["sha256"] == hashlib.sha256(latest).hexdigest()
    assert manifest["rows"] == latest.count(b"\n") - 1
    assert line["online_keys"] == 1 and line["left"] == []
    saw = {m["version"]: m for m in line["models"]}
    assert saw[best]["validation_rows"] > 0 and saw[best]["fit_window"]
    assert f"model {best} saw them" in forgot.stdout

    # The portal still has them: the same export ingested again leaves them out.
    landed = ingest_files(source / "users.parquet", source / "events.parquet", settings)
    assert landed.forgotten_users == 1 and landed.forgotten_events > 0
    assert (landed.events, landed.users, landed.days) == (0, 0, set())
    # The manifest describes what the erasure rewrote: the next validation reads nothing.
    report = run_validation(settings)
    assert report.passed and report.stats["days"]["validated"] == []
    materialize(settings, end=TODAY)
    assert files_naming(settings, user) == []
    assert list(client_redis.scan_iter(match=f"*{user}*".encode())) == []
    with TestClient(create_app(settings)) as api:
        assert api.get(f"/users/{user}/churn-risk").status_code == 404


def test_a_redis_that_persists_rewrites_its_files_without_the_learner(tmp_path, isolated_settings):
    installed("redis-server")
    folder = tmp_path / "redis"
    url = start_redis_server(free_port(), folder, persist=True, append_only=True)
    client = redis.Redis.from_url(url)
    learner = b"learner-0007"

    def on_disk() -> bool:
        return any(learner in p.read_bytes() for p in folder.rglob("*") if p.is_file())

    try:
        settings = isolated_settings(tmp_path / "world", redis_url=url)
        config = repo_config(settings)
        entity = EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(string_val="learner-0007")])
        client.hset(_redis_key(config.project, entity, 3), mapping={"_ts:user_features": b"0"})
        client.set("someone-else", "kept")
        client.save()
        assert on_disk()

        erased = forget_online(settings, ["learner-0007", "never-stored"])

        assert erased.keys == 1
        assert "BGSAVE" in erased.persistence and "BGREWRITEAOF" in erased.persistence
        wait_until("the server's files to lose the learner", lambda: not on_disk(), 60)
        assert client.get("someone-else") == b"kept"
    finally:
        client.shutdown(nosave=True)
