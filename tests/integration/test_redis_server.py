"""The online-store fallback: a private redis-server when none answers, a clear error otherwise."""

from __future__ import annotations

import contextlib
import shutil

import pytest
import redis

from core.settings import get_settings
from feature_repo.redis_server import (
    PRIVATE_DIR,
    RedisUnavailableError,
    ensure_redis,
    kill_redis_server,
    online_store,
    ping,
)
from tests.integration.services import free_port

pytestmark = pytest.mark.integration


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_starts_a_private_redis_when_none_answers(tmp_path):
    dead, private = free_port(), free_port()
    settings = get_settings(
        data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{dead}/0", redis_private_port=private
    )
    said: list[str] = []
    try:
        got = ensure_redis(settings, say=said.append)
        assert got.redis_url == f"redis://127.0.0.1:{private}/0"
        assert ping(got.redis_url)
        assert (tmp_path / "redis" / "redis.pid").exists()
        assert "started a private redis-server" in said[0]
        # A second call reuses it rather than starting another.
        assert ensure_redis(settings, say=said.append).redis_url == got.redis_url
    finally:
        with contextlib.suppress(redis.ConnectionError):
            redis.Redis(port=private).shutdown(nosave=True)


def test_no_redis_and_no_binary_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server here
    settings = get_settings(
        data_dir=tmp_path,
        redis_url=f"redis://:hunter2@127.0.0.1:{free_port()}/0",
        redis_private_port=free_port(),
    )
    with pytest.raises(RedisUnavailableError, match="apt-get install redis-server") as error:
        ensure_redis(settings)
    assert "hunter2" not in str(error.value)


def test_configured_redis_is_used_as_is(redis_url, tmp_path):
    settings = get_settings(data_dir=tmp_path, redis_url=redis_url)
    assert ensure_redis(settings, say=pytest.fail) is settings


def test_every_command_finds_the_store_the_same_way(redis_url, tmp_path):
    """``online_store``: the configured Redis when it answers; else this data dir's running
    private server; never another checkout's, and never a new one (only the demo starts one)."""
    dead = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    settings = get_settings(data_dir=tmp_path, redis_url=redis_url)
    said: list[str] = []
    assert online_store(settings, say=said.append) is settings
    assert "CHURN_REDIS_URL" in said[-1]

    down = get_settings(data_dir=tmp_path, redis_url=dead, redis_private_port=free_port())
    assert online_store(down, say=said.append) is down  # nothing runs: as configured
    assert "nothing answers" in said[-1] and "hunter2" not in said[-1]
    assert not (tmp_path / PRIVATE_DIR).exists(), "a job must not start a private server"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_the_private_server_counts_only_for_its_own_data_dir(tmp_path):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    port = free_port()
    ours = get_settings(data_dir=tmp_path / "ours", redis_url=dead, redis_private_port=port)
    theirs = get_settings(data_dir=tmp_path / "theirs", redis_url=dead, redis_private_port=port)
    try:
        started = ensure_redis(ours, say=lambda _: None)
        said: list[str] = []
        assert online_store(ours, say=said.append).redis_url == started.redis_url
        assert f"private redis-server of {ours.data_dir} on port {port}" in said[-1]
        assert online_store(theirs, say=said.append).redis_url == dead
    finally:
        kill_redis_server(ours.data_dir / PRIVATE_DIR)
    assert online_store(ours, say=said.append).redis_url == dead  # stopped: no longer used
