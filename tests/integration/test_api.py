"""The online API on real Redis + Feast with a trained, promoted model."""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core import partitions
from feature_repo.feast_cli import apply_definitions
from feature_repo.spec import FEATURE_VIEW
from feature_repo.store import materialize, open_store
from online_api.app import create_app
from online_api.schemas import LAPSED_EXAMPLE, SCORED_EXAMPLE, BatchResponse, ChurnRisk
from served import registry
from served.arms import CONTACT, HOLDOUT, read_assignments, write_assignments
from served.population import RECENCY
from tests.integration.services import after_a_whole_check, free_port, wait_until
from tests.integration.world import TODAY, copy_world
from training.models import build_model, calibrate, split_columns
from training.promote import force
from training.references import reference_bins

pytestmark = pytest.mark.integration
HANG_GUARD_SECONDS = 120  # waits end on a state or a counter; this only turns a hang into a failure

# The shared world ends today: the API refuses features older than the view's TTL, as the
# offline join does.
END = TODAY


@pytest.fixture(scope="module")
def served(tmp_path_factory, isolated_settings, trained_world):
    """A copy of the suite's trained world, online, with no production model."""
    settings = isolated_settings(tmp_path_factory.mktemp("api"), model_reload_seconds=0.01)
    try:
        yield settings, copy_world(trained_world, settings)
    finally:
        open_store(settings).teardown()


@contextlib.contextmanager
def serving(settings) -> Iterator[TestClient]:
    """The app with its lifespan run: the feature store opened, the model loaded."""
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def promoted(served):
    """The served world with a production model (earlier tests may have switched it)."""
    settings, result = served
    if registry.production(settings.models_dir) is None:
        force(settings, result.versions[result.best], "api test")
    return settings, result


def _newest_offline(settings) -> pd.DataFrame:
    """Each user's newest offline row, by user id within a stamp: the same users first on every
    run (DuckDB reads in parallel, and most users share the newest stamp; an arbitrary first
    user could be one who signed up after a stale materialization's end)."""
    glob = partitions.table_glob(settings.features_path)
    frame = duckdb.execute(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true)").df()
    frame = frame.sort_values(["event_timestamp", "user_id"], kind="stable")
    return frame.groupby("user_id").tail(1).set_index("user_id")


def test_no_production_model_is_503(served):
    settings, _ = served
    with serving(settings) as client:
        assert registry.production(settings.models_dir) is None
        assert client.get("/ready").status_code == 503
        response = client.get("/users/u000001/churn-risk")
        assert response.status_code == 503
        assert "churn promote" in response.json()["detail"]
        assert client.get("/health").status_code == 200


def test_scores_equal_the_offline_score_of_the_same_row(served):
    settings, result = served
    version = result.versions[result.best]
    force(settings, version, "api test")
    with serving(settings) as client:
        assert client.get("/ready").json()["model_version"] == version
        model, metadata = registry.load_model(settings.models_dir, version)
        names = [r.split(":", 1)[1] for r in metadata["feature_refs"]]
        newest = _newest_offline(settings)
        # The scored population (lapsed users get no risk: test_users_outside_the_population_…).
        active = newest.index[newest["days_since_last_activity"] < settings.active_lookback_days]
        users = sorted(np.random.default_rng(0).choice(active, size=25, replace=False))
        expected = model.predict_proba(newest.loc[users, names])[:, 1]
        for user, want in zip(users, expected, strict=True):
            body = client.get(f"/users/{user}/churn-risk").json()
            assert body["status"] == "scored", user
            assert body["churn_risk"] == pytest.approx(want, abs=1e-6), user
            assert body["model_version"] == version
            assert body["risk_band"] in ("low", "medium", "high")
            assert len(body["top_factors"]) <= 3
            assert all(f["effect"] > 0 for f in body["top_factors"])
            assert body["features_as_of"].startswith(
                str(newest.loc[user, "event_timestamp"].date())
            )


def test_unknown_and_malformed_ids(served):
    settings, _ = served
    with serving(settings) as client:
        unknown = client.get("/users/nobody-here/churn-risk")
        assert unknown.status_code == 404
        assert "nobody-here" in unknown.json()["detail"]
        assert client.get("/users/bad id!/churn-risk").status_code == 422


def test_metrics_use_route_templates(served):
    settings, _ = served
    with serving(settings) as client:
        client.get("/users/nobody-here/churn-risk")
        text = client.get("/metrics").text
        assert 'route="/users/{user_id}/churn-risk"' in text
        assert "nobody-here" not in text
        assert 'churn_api_errors_total{kind="not_found"}' in text


def test_promotion_is_picked_up_without_a_restart(served):
    settings, result = served
    with serving(settings) as client:
        first = client.get("/model").json()["version"]
        other = next(v for v in result.versions.values() if v != first)
        force(settings, other, "hot reload test")
        after_a_whole_check(client.app.state.service.holder)
        assert client.get("/model").json()["version"] == other
        assert client.get("/users/nobody-here/churn-risk").status_code == 404


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, which the test may stop and start again."""
    import shutil
    import subprocess

    import redis

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    port = free_port()

    def start() -> None:
        subprocess.run(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
            check=True, capture_output=True,
        )  # fmt: skip
        wait_until("redis-server to answer", redis.Redis(port=port).ping, HANG_GUARD_SECONDS,
                   interval=0.05, ignore=(redis.ConnectionError,))  # fmt: skip

    def stop() -> None:
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(port=port).shutdown(nosave=True)

    start()
    yield port, start, stop
    stop()


def test_redis_down_is_a_quick_503_and_the_service_recovers(promoted, own_redis):
    import redis

    base, _ = promoted
    port, start, stop = own_redis
    settings = base.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{port}/0",
            "feast_project": f"churntest_{uuid.uuid4().hex[:10]}",
        }
    )
    apply_definitions(settings)
    materialize(settings, end=END)
    with serving(settings) as client:
        user = _newest_offline(settings).index[0]
        assert client.get(f"/users/{user}/churn-risk").status_code == 200
        # Quick by construction: client timeouts of CHURN_API_REDIS_TIMEOUT_MS, no retries
        # (redis-py's default retries with a backoff of up to 10 s).
        online_store = client.app.state.service.online.store.provider.online_store
        pool = online_store._client_async.connection_pool
        seconds = settings.api_redis_timeout_ms / 1000
        assert pool.connection_kwargs["socket_timeout"] == seconds
        assert pool.connection_kwargs["socket_connect_timeout"] == seconds
        assert pool.make_connection().retry.get_retries() == 0

        stop()
        failed = _store_errors(client)
        down = client.get(f"/users/{user}/churn-risk")
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "1"
        assert _store_errors(client) == failed + 1
        assert client.get("/ready").status_code == 503

        start()  # an empty Redis: reload the features, as the nightly job would
        materialize(settings, end=END)
        statuses = [client.get(f"/users/{user}/churn-risk").status_code for _ in range(3)]
        # A pooled connection to the stopped server fails once, then is replaced.
        assert statuses[-1] == 200 and set(statuses) <= {200, 503}, statuses
        assert client.get("/ready").status_code == 200

        # A stalled Redis: every client's commands wait 3 s, much longer than the client
        # timeout, so a 503 (not a late 200) says the timeout answered first.
        redis.Redis(port=port).client_pause(3000)
        slow = client.get(f"/users/{user}/churn-risk")
        assert slow.status_code == 503
        assert slow.headers["Retry-After"] == "1"
        redis.Redis(port=port).ping()  # answered once the pause is over
        statuses = [client.get(f"/users/{user}/churn-risk").status_code for _ in range(3)]
        assert statuses[-1] == 200 and set(statuses) <= {200, 503}, statuses


def _store_errors(client: TestClient) -> float:
    text = client.get("/metrics").text
    found = re.search(r'^churn_api_errors_total\{kind="store_unavailable"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_batch_scores_many_in_one_call_and_reports_unknown_ids(promoted):
    settings, _ = promoted
    with serving(settings) as client:
        users = list(_newest_offline(settings).index[:5])
        body = client.post("/churn-risk:batch", json={"user_ids": [*users, "nobody-here"]}).json()
        got = {item["user_id"]: item for item in body["results"]}
        assert got["nobody-here"]["error"] == "not_found"
        for user in users:
            single = client.get(f"/users/{user}/churn-risk").json()
            assert got[user]["result"]["churn_risk"] == pytest.approx(
                single["churn_risk"], abs=1e-12
            )
        too_many = client.post(
            "/churn-risk:batch", json={"user_ids": ["u"] * (settings.api_batch_max + 1)}
        )
        assert too_many.status_code == 413
        assert str(settings.api_batch_max) in too_many.json()["detail"]


def test_bearer_token_guards_scoring_but_not_health_or_metrics(promoted):
    settings, _ = promoted
    guarded = settings.model_copy(update={"api_token": SecretStr("s3cret-token")})
    with serving(guarded) as client:
        user = _newest_offline(settings).index[0]
        assert client.get(f"/users/{user}/churn-risk").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.get(f"/users/{user}/churn-risk", headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret-token"}
        assert client.get(f"/users/{user}/churn-risk", headers=right).status_code == 200
        assert client.post("/churn-risk:batch", json={"user_ids": [user]}).status_code == 401
        assert client.get("/health").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "s3cret-token" not in metrics.text


@pytest.fixture
def api_schema(promoted):
    import schemathesis

    settings, _ = promoted
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))


def test_openapi_fuzz_finds_no_500_and_no_schema_violation(api_schema):
    """Property-based requests from the OpenAPI schema: never a 500, always as documented."""
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings

    checked = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=25,
            deadline=None,
            derandomize=True,  # the same examples every run: CI must not depend on luck
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            case.call_and_validate()

        check()
        checked.append(operation.label)
    assert "GET /users/{user_id}/churn-risk" in checked
    assert "POST /churn-risk:batch" in checked


def test_promotion_during_a_stream_of_requests_fails_none(promoted):
    settings, result = promoted
    with serving(settings) as client:
        user = _newest_offline(settings).index[0]
        start = client.get("/model").json()["version"]
        target = next(v for v in result.versions.values() if v != start)
        statuses, versions = [], set()
        for i in range(300):
            if i == 100:
                force(settings, target, "switch mid-stream")
            response = client.get(f"/users/{user}/churn-risk")
            statuses.append(response.status_code)
            versions.add(response.json().get("model_version"))
        assert set(statuses) == {200}
        assert versions == {start, target}


def test_features_older_than_the_view_ttl_are_a_404_that_says_so(promoted, tmp_path):
    settings, _ = promoted
    # A registry of its own (teardown empties the whole registry), over the same features.
    update = {"data_dir": tmp_path, "feast_project": f"churntest_{uuid.uuid4().hex[:10]}"}
    stale = settings.model_copy(update=update)
    (tmp_path / "features").symlink_to(settings.data_dir / "features")
    apply_definitions(stale)
    materialize(stale, end=END - timedelta(days=5))  # the nightly job stopped five days ago
    try:
        with serving(stale) as client:
            user = _newest_offline(settings).index[0]
            response = client.get(f"/users/{user}/churn-risk")
            assert response.status_code == 404
            assert "within the TTL" in response.json()["detail"]
            batch = client.post("/churn-risk:batch", json={"user_ids": [user]}).json()
            assert batch["results"][0]["error"] == "stale_features"
            assert 'churn_api_errors_total{kind="stale_features"}' in client.get("/metrics").text
    finally:
        open_store(stale).teardown()


def test_online_rows_equal_what_feast_get_online_features_returns(served):
    import asyncio

    from online_api.online_features import OnlineFeatures
    from training.dataset import FEATURE_SERVICE, feature_refs

    settings, _ = served
    online = OnlineFeatures(settings)
    refs = feature_refs(online.store)
    plan = online.plan(FEATURE_SERVICE, refs)
    users = [*_newest_offline(settings).index[:20], "nobody-here"]

    async def read() -> list:
        try:
            return await online.fetch(users, plan)
        finally:
            await online.aclose()

    rows = asyncio.run(read())
    want = online.store.get_online_features(
        features=online.store.get_feature_service(FEATURE_SERVICE),
        entity_rows=[{"user_id": u} for u in users],
    ).to_dict(include_event_timestamps=True)
    names = [ref.split(":", 1)[1] for ref in refs]
    assert rows[-1] is None
    for i, row in enumerate(rows[:-1]):
        assert row.values == {name: want[name][i] for name in names}, users[i]
        newest = max(want[f"{name}__ts"][i] for name in names)
        assert row.as_of == datetime.fromtimestamp(newest, UTC)


def test_every_value_kind_reads_as_feast_get_online_features_returns_it(served):
    """The API's own HMGET of Feast's layout against Feast's read, on rows written by Feast's
    writer: each scalar kind, an explicit null, features never written, a row of nulls only
    (no features: a 404), a user not in the store, and the timestamp to the microsecond.

    An explicit null (``null_val``, what ``feast serve``'s push writes for a JSON null) is
    None, as Feast's feature server answers it (``feature_server_utils._value_to_native``);
    the SDK's ``to_dict`` alone turns it into 0, the enum's number, so it is compared there."""
    import asyncio

    from feast.feature_server_utils import _value_to_native
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Null, Value

    from online_api.online_features import OnlineFeatures
    from training.dataset import FEATURE_SERVICE, feature_refs

    settings, _ = served
    online = OnlineFeatures(settings)
    store, config = online.store, online.store.config
    refs = feature_refs(store)
    names = [ref.split(":", 1)[1] for ref in refs]
    kinds = [Value(int32_val=-7), Value(int64_val=2**40 + 3), Value(float_val=0.1),
             Value(double_val=1 / 3), Value(string_val="plan-ü"), Value(bool_val=True),
             Value(bool_val=False), Value(null_val=Null.NULL), Value(int64_val=0),
             Value(double_val=float("nan")), Value(string_val="")]  # fmt: skip
    tag = uuid.uuid4().hex[:8]
    mixed, nulls, nobody = f"kinds-{tag}", f"nulls-{tag}", f"nobody-{tag}"
    stamp = datetime(2026, 3, 1, 0, 0, 0, 123456, tzinfo=UTC)

    def key(user: str) -> EntityKey:
        return EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user)])

    view = store.get_feature_view(FEATURE_VIEW)
    rows = [  # the rest of the features of ``mixed`` are never written: absent fields
        (key(mixed), dict(zip(names, kinds, strict=False)), stamp, None),
        (key(nulls), {name: Value(null_val=Null.NULL) for name in names[:5]}, stamp, None),
    ]
    store.provider.online_write_batch(config, view, rows, None)
    users = [mixed, nulls, nobody, mixed]
    try:
        plan = online.plan(FEATURE_SERVICE, refs)

        async def read() -> list:
            try:
                return await online.fetch(users, plan)
            finally:
                await online.aclose()

        got = asyncio.run(read())
        want = store.get_online_features(
            features=store.get_feature_service(FEATURE_SERVICE),
            entity_rows=[{"user_id": u} for u in users],
        ).to_dict()
        null = Value(null_val=Null.NULL)
        assert got[1] is None and got[2] is None  # nothing but nulls, or nothing at all
        assert all(want[name][2] is None for name in names)
        assert [want[name][1] for name in names[:5]] == [0] * 5 != [_value_to_native(null)] * 5
        for row in (got[0], got[3]):
            expected = {name: want[name][0] for name in names} | {names[7]: _value_to_native(null)}
            nan = names[9]  # NaN equals nothing, itself included: compared on its own
            assert {n: v for n, v in row.values.items() if n != nan} == {
                n: v for n, v in expected.items() if n != nan
            }
            assert math.isnan(row.values[nan]) and math.isnan(expected[nan])
            assert row.as_of == stamp
        single = got[0].values[names[2]]  # a float32, as Feast returns it
        assert single == pytest.approx(0.1, rel=1e-7) and single != 0.1
        assert [got[0].values[n] for n in names[:2]] == [-7, 2**40 + 3]
        assert [got[0].values[n] for n in names[4:9]] == ["plan-ü", True, False, None, 0]
        assert all(got[0].values[n] is None for n in names[len(kinds) :])
    finally:
        client = store.provider.online_store._get_client(config.online_store)
        version = config.entity_key_serialization_version
        client.delete(*(_redis_key(config.project, key(u), version) for u in (mixed, nulls)))


def test_every_command_finds_the_demos_private_redis(promoted, tmp_path):
    """Nothing answers at CHURN_REDIS_URL, and the private redis-server `make demo` started
    for this data dir runs: `churn features materialize` loads it and `churn serve` answers
    from it, each saying so (it used to answer "online store unavailable")."""
    import os
    import subprocess
    import sys

    import httpx

    from feature_repo.redis_server import PRIVATE_DIR, ensure_redis, kill_redis_server

    base, _ = promoted
    settings = base.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",  # nothing there
            "redis_private_port": free_port(),
            "feast_project": f"churntest_{uuid.uuid4().hex[:10]}",
        }
    )
    private = settings.data_dir / PRIVATE_DIR
    said: list[str] = []
    try:
        ensure_redis(settings, say=said.append)  # as the demo starts it
        assert "started a private redis-server" in said[0]
        apply_definitions(settings)
        env = os.environ | settings.as_env()
        churn = str(Path(sys.executable).with_name("churn"))
        loaded = subprocess.run(
            [churn, "features", "materialize", "--end", END.strftime("%Y-%m-%dT%H:%M:%S")],
            env=env, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS, check=False,
        )  # fmt: skip
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        assert "the private redis-server" in loaded.stdout
        port = free_port()
        log_path = tmp_path / "serve.log"
        with log_path.open("w") as log:
            server = subprocess.Popen([churn, "serve", "--port", str(port)], env=env,
                                      stdout=log, stderr=log)  # fmt: skip
        user = _newest_offline(settings).index[0]
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:

                def ready() -> bool:
                    assert server.poll() is None, log_path.read_text()
                    return client.get("/ready").status_code == 200

                wait_until("churn serve to be ready", ready, HANG_GUARD_SECONDS, interval=0.2,
                           ignore=(httpx.TransportError,))  # fmt: skip
                answer = client.get(f"/users/{user}/churn-risk")
        finally:
            server.terminate()
            server.wait(timeout=30)
        assert answer.status_code == 200, answer.text
        assert "the private redis-server" in log_path.read_text()
    finally:
        if (private / "redis.pid").exists():
            kill_redis_server(private)
        shutil.rmtree(private, ignore_errors=True)


def test_two_workers_switch_models_mid_stream_and_count_together(promoted, tmp_path):
    """`churn serve --workers 2`: a promotion reaches both without a failed request, and
    /metrics, answered by either, counts the requests of both."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    settings, result = promoted
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    env = os.environ | settings.as_env() | {
        "CHURN_MODEL_RELOAD_SECONDS": "0.2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }  # fmt: skip
    churn = Path(sys.executable).with_name("churn")
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [churn, "serve", "--port", str(port), "--workers", "2"], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    user = _newest_offline(settings).index[0]
    # No keep-alive: every request is a new connection, so both workers take requests.
    with httpx.Client(base_url=base, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        try:

            def ready() -> bool:
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                return client.get("/ready").status_code == 200

            wait_until("churn serve to be ready", ready, HANG_GUARD_SECONDS, interval=0.2,
                       ignore=(httpx.TransportError,))  # fmt: skip
            start = client.get("/model").json()["version"]
            target = next(v for v in result.versions.values() if v != start)
            statuses, versions, sent = [], [], 0
            for _ in range(100):
                response = client.get(f"/users/{user}/churn-risk")
                statuses.append(response.status_code)
                versions.append(response.json().get("model_version"))
            force(settings, target, "switch under two workers")
            # Until each worker has served the new model (and no longer the old one).

            def switched() -> bool:
                response = client.get(f"/users/{user}/churn-risk")
                statuses.append(response.status_code)
                versions.append(response.json().get("model_version"))
                return _all_switched(metrics_dir, workers=2, old=start, new=target)

            wait_until("each worker to serve the new model", switched, HANG_GUARD_SECONDS,
                       interval=0)  # fmt: skip
            after = []
            for _ in range(100):
                response = client.get(f"/users/{user}/churn-risk")
                statuses.append(response.status_code)
                after.append(response.json().get("model_version"))
            sent = len(statuses)
            assert set(statuses) == {200}
            assert set(versions) <= {start, target} and start in versions
            assert set(after) == {target}, "a worker still served the replaced model"
            text = client.get("/metrics").text
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    pids = {re.search(r"_(\d+)\.db$", f.name).group(1) for f in metrics_dir.glob("counter_*.db")}
    assert len(pids) >= 2, "one worker took every request"
    counted = re.search(
        r'churn_api_requests_total\{route="/users/\{user_id\}/churn-risk",status="200"\} (\S+)',
        text,
    )
    assert counted and float(counted.group(1)) == sent
    assert re.search(rf'churn_api_model_info\{{kind="\w+",version="{target}"\}} 1\.0', text)


def _all_switched(metrics_dir: Path, workers: int, old: str, new: str) -> bool:
    """Whether each of ``workers`` worker processes has answered with model ``new`` since it
    last answered with ``old``, read per process from the prometheus multiprocess files:
    ``churn_api_ready`` (set by every worker at start-up) names the workers,
    ``churn_api_model_info`` what each has served."""
    from prometheus_client.mmap_dict import MmapedDict

    def values(kind: str, metric: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for path in metrics_dir.glob(f"gauge_{kind}_*.db"):
            pid = path.stem.rsplit("_", 1)[1]
            for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
                name, _, labels, _ = json.loads(key)
                if name == metric:
                    out.setdefault(pid, {})[labels.get("version", "")] = value
        return out

    ready, served = values("min", "churn_api_ready"), values("max", "churn_api_model_info")
    return len(ready) == workers and all(
        served.get(pid, {}).get(new) == 1.0 and served[pid].get(old, 0.0) == 0.0 for pid in ready
    )


def _answers(client: TestClient) -> dict[str, float]:
    """``churn_api_answers_total`` by status, as /metrics reports it now."""
    text = client.get("/metrics").text
    found = re.findall(r'^churn_api_answers_total\{status="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {status: float(value) for status, value in found}


def _population_cases(settings) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The newest offline rows, two users outside the population (one exactly at the
    look-back: last active on D - lookback) and two inside (one at its edge, D - lookback + 1)."""
    newest = _newest_offline(settings)
    days, lookback = newest["days_since_last_activity"], settings.active_lookback_days
    lapsed = [days[days == lookback].index[0], days[days > 90].index[0]]
    scored = [days[days == lookback - 1].index[0], days[days == 0].index[0]]
    return newest, lapsed, scored


def test_users_outside_the_population_are_answered_lapsed_without_a_risk(promoted):
    settings, _ = promoted
    newest, lapsed, scored = _population_cases(settings)
    with serving(settings) as client:
        before = _answers(client)
        single = {user: client.get(f"/users/{user}/churn-risk") for user in lapsed + scored}
        after_single = _answers(client)
        batch = client.post("/churn-risk:batch", json={"user_ids": lapsed + scored}).json()
        after_batch = _answers(client)

    assert {user: r.status_code for user, r in single.items()} == dict.fromkeys(single, 200)
    bodies = {user: r.json() for user, r in single.items()}
    for user, body in bodies.items():
        ChurnRisk.model_validate(body)  # the documented shape, and status agrees with the risk
        assert body["days_since_last_activity"] == int(newest.loc[user, "days_since_last_activity"])
        assert body["features_as_of"].startswith(str(newest.loc[user, "event_timestamp"].date()))
    for user in lapsed:
        assert bodies[user]["status"] == "lapsed", user
        assert bodies[user]["churn_risk"] is None
        assert bodies[user]["risk_band"] is None
        assert bodies[user]["top_factors"] is None
    for user in scored:
        assert bodies[user]["status"] == "scored", user
        assert 0.0 <= bodies[user]["churn_risk"] <= 1.0
        assert bodies[user]["risk_band"] in ("low", "medium", "high")

    # The batch answers each user as the single endpoint does.
    items = {item["user_id"]: item for item in batch["results"]}
    assert list(items) == lapsed + scored
    for user, body in bodies.items():
        got = items[user]["result"]
        assert items[user].get("error") is None
        assert got["churn_risk"] == pytest.approx(body["churn_risk"], abs=1e-12)
        same = ("served_at", "churn_risk", "top_factors")
        assert {k: v for k, v in got.items() if k not in same} == {
            k: v for k, v in body.items() if k not in same
        }
        if body["top_factors"] is None:
            assert got["top_factors"] is None
        else:
            assert [f["feature"] for f in got["top_factors"]] == [
                f["feature"] for f in body["top_factors"]
            ]

    assert after_single["lapsed"] - before["lapsed"] == len(lapsed)
    assert after_single["scored"] - before["scored"] == len(scored)
    assert after_batch["lapsed"] - after_single["lapsed"] == len(lapsed)
    assert after_batch["scored"] - after_single["scored"] == len(scored)


def test_the_api_scores_exactly_the_users_of_the_nightly_list(promoted):
    """The nightly population at T (``batch.job.population``) is who the API scores from
    the row of day T - 1; everyone else the online store knows is answered lapsed."""
    from batch.job import population
    from core.engines import open_engine

    settings, _ = promoted
    users = sorted(_newest_offline(settings).index)
    assert len(users) <= settings.api_batch_max
    with serving(settings) as client:
        results = client.post("/churn-risk:batch", json={"user_ids": users}).json()["results"]
    status = {item["user_id"]: item["result"]["status"] for item in results}
    nightly = set(population(settings, open_engine(settings), END))
    assert {user for user, s in status.items() if s == "scored"} == nightly
    assert {user for user, s in status.items() if s == "lapsed"} == set(users) - nightly
    assert nightly and set(users) - nightly  # both answers occur in this world
    # No night's list in this world: nobody is listed, so nobody has an arm.
    assert {(item["result"]["listed"], item["result"]["arm"]) for item in results} == {
        (False, None)
    }


def test_openapi_documents_the_status_and_both_answers(served):
    settings, _ = served
    schema = TestClient(create_app(settings)).get("/openapi.json").json()
    risk = schema["components"]["schemas"]["ChurnRisk"]
    status = risk["properties"]["status"]
    assert status["enum"] == ["scored", "lapsed"]
    assert "outside the scored population" in status["description"]
    assert "CHURN_ACTIVE_LOOKBACK_DAYS" in status["description"]
    assert {"status", "churn_risk", "risk_band", "days_since_last_activity",
            "top_factors"} <= set(risk["required"])  # fmt: skip
    for field in ("churn_risk", "risk_band", "top_factors"):
        assert {"type": "null"} in risk["properties"][field]["anyOf"], field
        assert "null when lapsed" in risk["properties"][field]["description"], field
    assert risk["properties"]["days_since_last_activity"]["type"] == "integer"
    assert [example["status"] for example in risk["examples"]] == ["scored", "lapsed"]
    for example in risk["examples"]:
        ChurnRisk.model_validate(example)
    single = schema["paths"]["/users/{user_id}/churn-risk"]["get"]["responses"]["200"]
    content = single["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/ChurnRisk"}
    assert set(content["examples"]) == {"scored", "lapsed"}
    for name, example in content["examples"].items():
        assert ChurnRisk.model_validate(example["value"]).status == name
    # The nulls are in the document (FastAPI would leave them out), as the API sends them.
    assert content["examples"]["lapsed"]["value"]["churn_risk"] is None
    batch_example = schema["components"]["schemas"]["BatchResponse"]["examples"][0]
    assert BatchResponse.model_validate(batch_example).results[2].result is None
    item = schema["components"]["schemas"]["BatchItem"]["properties"]["result"]
    assert {"$ref": "#/components/schemas/ChurnRisk"} in item["anyOf"]
    with pytest.raises(ValueError, match="lapsed answer has no churn_risk"):
        ChurnRisk.model_validate(LAPSED_EXAMPLE | {"churn_risk": 0.9999994})
    with pytest.raises(ValueError, match="scored answer has churn_risk"):
        ChurnRisk.model_validate(SCORED_EXAMPLE | {"churn_risk": None})


def test_a_model_that_leaves_out_the_recency_is_served_its_features_and_answers_lapsed(promoted):
    """``days_since_last_activity`` is read for the population rule even when the model
    leaves it out, and the model still gets only its own features."""
    settings, result = promoted
    newest, lapsed, scored = _population_cases(settings)
    best = registry.load_metadata(settings.models_dir, result.versions[result.best])
    names = [r.split(":", 1)[1] for r in best["feature_refs"] if r.split(":", 1)[1] != RECENCY]
    frame = newest[names]
    label = (newest["active_days_7d"] == 0).astype(int)  # any learnable target will do
    numeric, categorical = split_columns(frame, names)
    fitted = build_model("logistic", numeric, categorical, seed=0).fit(frame, label)
    model = calibrate(fitted, frame, label)
    version = registry.new_version(END, uuid.uuid4().hex)
    registry.save_model(settings.models_dir, version, model, {
        "created_at": END, "model_kind": "logistic", "feature_service": best["feature_service"],
        "feature_refs": [f"{FEATURE_VIEW}:{name}" for name in names],
        "numeric_features": numeric, "categorical_features": categorical,
        "reference_bins": reference_bins(frame, numeric, categorical),
        "left_out_features": [RECENCY],
    })  # fmt: skip
    force(settings, version, "a model without the recency")
    try:
        with serving(settings) as client:
            assert client.get("/model").json()["version"] == version
            bodies = {u: client.get(f"/users/{u}/churn-risk").json() for u in lapsed + scored}
    finally:
        force(settings, result.versions[result.best], "api test")
    expected = model.predict_proba(newest.loc[scored, names])[:, 1]
    for user, want in zip(scored, expected, strict=True):
        assert bodies[user]["status"] == "scored"
        assert bodies[user]["model_version"] == version
        assert bodies[user]["churn_risk"] == pytest.approx(want, abs=1e-6), user
        assert {f["feature"] for f in bodies[user]["top_factors"]} <= set(names)
    for user in lapsed:
        assert bodies[user]["status"] == "lapsed", user
        assert bodies[user]["churn_risk"] is None
        assert bodies[user]["days_since_last_activity"] == int(
            newest.loc[user, "days_since_last_activity"]
        )


def _listed_and_arms(client: TestClient, users: list[str]) -> dict[str, tuple[bool, str | None]]:
    """Each user's (listed, arm) as the batch endpoint answers; the single endpoint agrees."""
    results = client.post("/churn-risk:batch", json={"user_ids": users}).json()["results"]
    got = {item["user_id"]: (item["result"]["listed"], item["result"]["arm"]) for item in results}
    for user in users[:: max(1, len(users) // 20)]:  # a sample: one request each
        body = client.get(f"/users/{user}/churn-risk").json()
        ChurnRisk.model_validate(body)  # the documented shape: an arm only when listed
        assert (body["listed"], body["arm"]) == got[user], user
    return got


def test_a_running_api_answers_the_newest_nights_list(promoted):
    """The nightly batch's list, then a newer night's written while the API serves: each is
    answered without a restart, ``listed`` for its users and their arm, null for the others."""
    from batch.job import score_population

    base, _ = promoted
    # A wide holdout, so the batch's list has both arms; the API looks every 10 ms.
    settings = base.model_copy(update={"holdout_share": 0.5, "outreach_reload_seconds": 0.01})
    users = sorted(_newest_offline(settings).index)
    night = END - timedelta(days=1)
    made = [d for d in (settings.outreach_dir, settings.predictions_dir) if not d.exists()]
    try:
        with serving(settings) as client:
            outreach = client.app.state.service.outreach
            assert set(_listed_and_arms(client, users).values()) == {(False, None)}

            score_population(settings, as_of=night)  # writes the night's list with its arms
            after_a_whole_check(outreach)
            listed = read_assignments(settings, night.date()).set_index("user_id")["arm"]
            assert {CONTACT, HOLDOUT} <= set(listed)
            got = _listed_and_arms(client, users)
            assert {u: a for u, (on, a) in got.items() if on} == listed.to_dict()
            assert {got[u] for u in set(users) - set(listed.index)} == {(False, None)}

            # The next night: one contact user moves to holdout, one holdout user leaves the
            # list, a user on no list joins it.
            contact = listed.index[listed == CONTACT][0]
            left = listed.index[listed == HOLDOUT][0]
            joined = next(u for u in users if u not in listed.index)
            arms = listed.drop(left).to_dict() | {contact: HOLDOUT, joined: CONTACT}
            write_assignments(settings, END.date(), pd.DataFrame({
                "user_id": list(arms), "arm": list(arms.values()), "risk_band": "high",
                "churn_risk": 0.5, "monthly_revenue": 0.0, "model_version": "v",
            }))  # fmt: skip
            after_a_whole_check(outreach)
            assert outreach.night == END.date()
            got = _listed_and_arms(client, users)
            assert (got[contact], got[left], got[joined]) == (
                (True, HOLDOUT), (False, None), (True, CONTACT)
            )  # fmt: skip
            assert {u: a for u, (on, a) in got.items() if on} == arms
    finally:  # the module's other tests serve this world without a list
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)


def test_openapi_documents_listed_and_a_nullable_arm_on_both_endpoints(served):
    settings, _ = served
    schema = TestClient(create_app(settings)).get("/openapi.json").json()
    risk = schema["components"]["schemas"]["ChurnRisk"]
    assert {"listed", "arm"} <= set(risk["required"])
    assert risk["properties"]["listed"]["type"] == "boolean"
    assert {"type": "null"} in risk["properties"]["arm"]["anyOf"]
    assert {"enum": ["contact", "holdout"], "type": "string"} in risk["properties"]["arm"]["anyOf"]
    # Both endpoints answer with this schema: the single directly, the batch per item.
    single = schema["paths"]["/users/{user_id}/churn-risk"]["get"]["responses"]["200"]
    assert single["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChurnRisk"
    }
    lapsed = single["content"]["application/json"]["examples"]["lapsed"]["value"]
    assert (lapsed["listed"], lapsed["arm"]) == (False, None)  # the null is in the document
    item = schema["components"]["schemas"]["BatchItem"]["properties"]["result"]
    assert {"$ref": "#/components/schemas/ChurnRisk"} in item["anyOf"]
