"""The online-store fallback: a private redis-server when none answers, a clear error otherwise."""

from __future__ import annotations

import contextlib
import shutil

import pytest
import redis

from core.settings import get_settings
from feature_repo.redis_server import RedisUnavailableError, ensure_redis, ping
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
