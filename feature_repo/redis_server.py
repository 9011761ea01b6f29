"""Make sure an online store is reachable: the configured Redis, or a private one.

When nothing answers at ``CHURN_REDIS_URL`` and ``redis-server`` is on PATH, a
private server is started on its own port with its data under the data dir,
and the returned settings point at it. Nothing else's Redis is ever touched.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import redis

from core.readiness import NotReady, wait_until
from core.settings import Settings


class RedisUnavailableError(RuntimeError):
    """No Redis reachable and none can be started; the message says how to get one."""


def ping(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def ensure_redis(settings: Settings, say: Callable[[str], None] = print) -> Settings:
    """Settings whose ``redis_url`` answers: the configured one, else a private server."""
    if ping(settings.redis_url):
        return settings
    port = settings.redis_private_port
    private_url = f"redis://127.0.0.1:{port}/0"
    if ping(private_url):
        say(
            f"Redis at {redact_url(settings.redis_url)} is not reachable; using the private one on {port}"
        )
        return settings.model_copy(update={"redis_url": private_url})
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailableError(
            f"No Redis answers at {redact_url(settings.redis_url)} and `redis-server` is not on PATH. "
            "Install it (Debian/Ubuntu: `sudo apt-get install redis-server`) or point "
            "CHURN_REDIS_URL at a running Redis."
        )
    data = settings.data_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--dir",
            str(data),
            "--logfile",
            str(data / "redis.log"),
            "--pidfile",
            str(data / "redis.pid"),
            "--save",
            "60 1",
            "--appendonly",
            "no",
        ],
        check=True,
        capture_output=True,
    )
    try:
        wait_until(f"redis-server on port {port} to answer", lambda: ping(private_url), 10)
    except NotReady as exc:
        raise RedisUnavailableError(
            f"started redis-server on port {port}, but it does not answer"
        ) from exc
    say(
        f"No Redis at {redact_url(settings.redis_url)}: started a private redis-server on port {port} "
        f"(data in {data}; stop it with `redis-cli -p {port} shutdown`)"
    )
    return settings.model_copy(update={"redis_url": private_url})


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
