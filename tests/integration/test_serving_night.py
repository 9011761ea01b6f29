"""Serving holds through the night (issue 15): ``churn serve`` under a steady load while
``churn features materialize`` writes Redis, while its redis-server is killed and started
again, and while a model is promoted. The outcomes are asserted (no failed request, never a
500, recovery), never the timings; ``benchmarks/serving_night.py`` measures those."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from core.settings import Settings
from feature_repo.redis_server import kill_redis_server, start_redis_server
from feature_repo.store import open_store
from online_api import server
from served import registry
from tests.integration.services import free_port, wait_until
from tests.integration.world import SHARED_USERS, TODAY, copy_world
from training.promote import force
from training.train import TrainResult

pytestmark = pytest.mark.integration
HANG_GUARD_SECONDS = 120  # waits end on a state or a count; this only turns a hang into a failure
CONCURRENCY = 8
# The shared world ends today: the API refuses features older than the view's TTL, as the
# offline join does.
END = TODAY


@dataclass(frozen=True)
class Night:
    settings: Settings
    trained: TrainResult
    base: str  # the API's URL
    users: list[str]  # users the API answers 200 before any test
    redis_dir: Path  # the redis-server's own directory (its pid file)
    redis_port: int


@dataclass(frozen=True)
class Answer:
    status: int  # 0: the connection failed
    retry_after: str | None
    model_version: str | None
    detail: str | None


class Load:
    """``CONCURRENCY`` keep-alive clients asking random users, in a thread, until the block
    ends; ``answers`` in the order they arrived."""

    def __init__(self, base: str, users: list[str]) -> None:
        self.base, self.users = base, users
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    def __enter__(self) -> Load:
        self._thread.start()
        self.wait_for(50)  # the load is on before the test acts
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(HANG_GUARD_SECONDS)
        assert not self._thread.is_alive(), "the load did not stop"

    def wait_for(self, more: int) -> None:
        """Until ``more`` answers arrived after this call."""
        seen = len(self.answers)
        wait_until(f"{more} more answers", lambda: len(self.answers) >= seen + more,
                   HANG_GUARD_SECONDS, interval=0.01)  # fmt: skip

    def wait_for_503(self, since: int) -> None:
        """Until an answer after the first ``since`` is a 503 (the store went away)."""
        wait_until("the API to answer 503",
                   lambda: any(a.status == 503 for a in self.answers[since:]),
                   HANG_GUARD_SECONDS, interval=0.01)  # fmt: skip

    def wait_for_200s(self) -> None:
        """Until the last 20 answers are 200s (the API recovered)."""
        wait_until("the API to answer 200 again",
                   lambda: [a.status for a in self.answers[-20:]] == [200] * 20,
                   HANG_GUARD_SECONDS, interval=0.01)  # fmt: skip

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=self.base, limits=limits, timeout=10) as client:
            await asyncio.gather(*(self._client(client, i) for i in range(CONCURRENCY)))

    async def _client(self, client: httpx.AsyncClient, i: int) -> None:
        n = i
        while not self._stop.is_set():
            n += CONCURRENCY
            try:
                response = await client.get(f"/users/{self.users[n % len(self.users)]}/churn-risk")
            except httpx.TransportError:
                self.answers.append(Answer(0, None, None, None))
                continue
            body = response.json()
            self.answers.append(Answer(response.status_code, response.headers.get("retry-after"),
                                       body.get("model_version"), body.get("detail")))  # fmt: skip


@pytest.fixture(scope="module")
def night(tmp_path_factory, isolated_settings, trained_world) -> Iterator[Night]:
    """The shared world on a redis-server of its own, a trained and promoted model, and
    ``churn serve`` (one worker, as the benchmark runs it) on a free port."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    tmp = tmp_path_factory.mktemp("night")
    port = free_port()
    url = start_redis_server(port, tmp / "redis", persist=False)
    settings = isolated_settings(tmp, redis_url=url, model_reload_seconds=0.1)
    try:
        trained = copy_world(trained_world, settings)
        force(settings, trained.versions[trained.best], "serving night test")
        api_port = free_port()
        log = tmp / "serve.log"
        api = server.start(settings, api_port, log)
        try:
            base = f"http://127.0.0.1:{api_port}"
            server.wait_ready(base, api, log, timeout=HANG_GUARD_SECONDS)
            candidates = [f"u{i:06d}" for i in range(SHARED_USERS)]
            users = [u for u in candidates
                     if server.get_json(f"{base}/users/{u}/churn-risk")[0] == 200]  # fmt: skip
            assert len(users) > 100
            yield Night(settings, trained, base, users, tmp / "redis", port)
        finally:
            server.stop(api)
    finally:
        with contextlib.suppress(redis.RedisError):
            open_store(settings).teardown()
        with contextlib.suppress(redis.RedisError):
            redis.Redis(port=port).shutdown(nosave=True)


def materialize_command(settings: Settings) -> None:
    """``churn features materialize`` in a process of its own, as the nightly runs it."""
    churn = Path(sys.executable).with_name("churn")
    result = subprocess.run(
        [str(churn), "features", "materialize", "--end", END.strftime("%Y-%m-%dT%H:%M:%S")],
        env=os.environ | settings.as_env(), capture_output=True, text=True,
        timeout=HANG_GUARD_SECONDS,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_materialize_under_load_fails_no_request(night):
    with Load(night.base, night.users) as load:
        for _ in range(2):
            started = len(load.answers)
            materialize_command(night.settings)
            assert len(load.answers) > started, "no answer arrived while materialize ran"
        load.wait_for(50)
    assert {a.status for a in load.answers} == {200}


def test_a_promotion_under_load_fails_no_request_and_switches_the_answers(night):
    start = registry.production(night.settings.models_dir)
    target = next(v for v in night.trained.versions.values() if v != start)
    with Load(night.base, night.users) as load:
        force(night.settings, target, "promotion under load")
        wait_until("answers from the promoted model",
                   lambda: any(a.model_version == target for a in load.answers[-20:]),
                   HANG_GUARD_SECONDS, interval=0.01)  # fmt: skip
        load.wait_for(100)
    assert {a.status for a in load.answers} == {200}
    assert {a.model_version for a in load.answers} == {start, target}
    assert {a.model_version for a in load.answers[-50:]} == {target}


def test_a_redis_restart_that_keeps_its_data_is_503s_then_200s(night):
    """As compose runs Redis (an append-only file): killed and started again, it reloads the
    features, so the API answers 503 with Retry-After while it is down and 200 once it
    answers again, without a materialize and without restarting the API; never a 404."""
    client = redis.Redis.from_url(night.settings.redis_url)
    client.config_set("appendonly", "yes")  # writes the whole dataset to the file, then logs

    def file_written() -> bool:
        info = client.info("persistence")
        return (
            info["aof_enabled"] == 1
            and not info["aof_rewrite_in_progress"]
            and not (info["aof_rewrite_scheduled"])
        )

    wait_until("the append-only file written", file_written, HANG_GUARD_SECONDS, interval=0.05)
    with Load(night.base, night.users) as load:
        killed = len(load.answers)
        kill_redis_server(night.redis_dir)
        load.wait_for_503(killed)
        start_redis_server(night.redis_port, night.redis_dir, persist=False, append_only=True)
        load.wait_for_200s()
    answers = load.answers
    assert {a.status for a in answers} == {200, 503}, {a.status for a in answers}
    assert all(a.retry_after == "1" for a in answers if a.status == 503)
    redis.Redis.from_url(night.settings.redis_url).config_set("appendonly", "no")


def test_a_redis_restart_under_load_is_503s_never_a_500_and_the_api_recovers(night):
    """Killed, the redis-server takes the features with it (it saves nothing): 503s with
    Retry-After while it is down, 404s (no features) until materialize has loaded it again,
    then 200s, without restarting the API."""
    with Load(night.base, night.users) as load:
        killed = len(load.answers)
        kill_redis_server(night.redis_dir)
        load.wait_for_503(killed)
        empty = len(load.answers)
        start_redis_server(night.redis_port, night.redis_dir, persist=False)
        materialize_command(night.settings)
        loaded = len(load.answers)
        load.wait_for_200s()
    answers = load.answers
    assert {a.status for a in answers} <= {200, 404, 503}, {a.status for a in answers}
    assert all(a.retry_after == "1" for a in answers if a.status == 503)
    assert {a.status for a in answers[killed:empty]} >= {503}
    # Features are missing only while the restarted Redis is empty: answers that arrived
    # before its start, or after the reload (bar requests in flight at its end), are not 404.
    not_found = [i for i, a in enumerate(answers) if a.status == 404]
    assert all(empty <= i < loaded + CONCURRENCY for i in not_found)
    assert all("no features in the online store" in answers[i].detail for i in not_found)
    # A pooled connection opened before the kill may fail once more: a 503, never a 404.
    assert {a.status for a in answers[loaded + CONCURRENCY :]} <= {200, 503}
