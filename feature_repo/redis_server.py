"""Which Redis is the online store: the configured one, or the demo's private one.

Every command that needs the store finds it with ``online_store``: ``CHURN_REDIS_URL``
when it answers, else the private server that ``make demo`` started for this data dir.
Only the demo starts one (``ensure_redis``: when nothing answers and ``redis-server`` is
on PATH, on its own port with its data under the data dir). Nothing else's Redis is
ever touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import redis

from core.readiness import NotReady, wait_until
from core.redaction import redact
from core.settings import Settings

PRIVATE_DIR = "redis"  # the private server's data, pid file and log, under the data dir


class RedisUnavailableError(RuntimeError):
    """No Redis reachable and none can be started; the message says how to get one."""


def ping(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def private_url(settings: Settings) -> str | None:
    """The URL of the private redis-server this data dir started (``make demo``), if it runs.

    Only a server whose pid file is in this data dir counts: another checkout's private
    server on the same port holds another world.
    """
    pid_file = settings.data_dir / PRIVATE_DIR / "redis.pid"
    try:
        alive = Path(f"/proc/{int(pid_file.read_text())}").exists()
    except (OSError, ValueError):
        return None
    url = f"redis://127.0.0.1:{settings.redis_private_port}/0"
    return url if alive and ping(url) else None


def online_store(settings: Settings, say: Callable[[str], None] = print) -> Settings:
    """Settings whose ``redis_url`` is the online store every command uses, said in one line.

    The configured Redis when it answers; else the private server ``make demo`` started for
    this data dir, while it runs; else the configured one as it is (a server that is down
    may come back: the API reports itself not ready meanwhile, and a job fails naming it).
    Only the demo starts a private server (``ensure_redis``): a job that started one would
    load or check a store that nothing serves from.
    """
    if ping(settings.redis_url):
        say(f"online store: {redact(settings.redis_url)} (CHURN_REDIS_URL)")
        return settings
    if url := private_url(settings):
        say(
            f"online store: the private redis-server of {settings.data_dir} on port "
            f"{settings.redis_private_port} (nothing answers at {redact(settings.redis_url)})"
        )
        return settings.model_copy(update={"redis_url": url})
    say(
        f"online store: nothing answers at {redact(settings.redis_url)} (CHURN_REDIS_URL), "
        f"and no private redis-server of {settings.data_dir} runs"
    )
    return settings


def ensure_redis(settings: Settings, say: Callable[[str], None] = print) -> Settings:
    """Settings whose ``redis_url`` answers: the configured one, else a private server
    (this data dir's if it runs, else a new one). The demo's way: it must serve somewhere."""
    if ping(settings.redis_url):
        return settings
    port = settings.redis_private_port
    if url := private_url(settings):
        say(
            f"Redis at {redact(settings.redis_url)} is not reachable; using the private one on {port}"
        )
        return settings.model_copy(update={"redis_url": url})
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailableError(
            f"No Redis answers at {redact(settings.redis_url)} and `redis-server` is not on PATH. "
            "Install it (Debian/Ubuntu: `sudo apt-get install redis-server`) or point "
            "CHURN_REDIS_URL at a running Redis."
        )
    data = settings.data_dir / PRIVATE_DIR
    url = start_redis_server(port, data, binary=binary)
    say(
        f"No Redis at {redact(settings.redis_url)}: started a private redis-server on port {port} "
        f"(data in {data}; stop it with `redis-cli -p {port} shutdown`); every churn command "
        f"with this data dir uses it while it runs"
    )
    return settings.model_copy(update={"redis_url": url})


def start_redis_server(
    port: int,
    directory: Path,
    persist: bool = True,
    binary: str = "redis-server",
    append_only: bool = False,
) -> str:
    """Start a daemonized redis-server on 127.0.0.1:``port`` with its pid file, log and data
    in ``directory``; its URL once it answers. Without ``persist`` it never writes a
    snapshot: a benchmark or a test that kills it and starts it again gets an empty store,
    as after a crash of a server that had no time to save. ``append_only`` keeps an
    append-only file there, as compose's Redis does: started again, it reloads its data."""
    directory.mkdir(parents=True, exist_ok=True)
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
               "--dir", str(directory), "--logfile", str(directory / "redis.log"),
               "--pidfile", str(directory / "redis.pid"), "--save", "60 1" if persist else "",
               "--appendonly", "yes" if append_only else "no"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(f"redis-server on port {port} to answer", lambda: ping(url), 10)
    except NotReady as exc:
        raise RedisUnavailableError(
            f"started redis-server on port {port}, but it does not answer"
        ) from exc
    return url


def kill_redis_server(directory: Path, timeout: float = 10) -> None:
    """SIGKILL the redis-server started with ``directory`` (its pid file there), as a crash
    would end it, and wait until it is gone; only that server, never another Redis."""
    pid = int((directory / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)

    def gone() -> bool:  # reaped, or a zombie (a container's init may not reap it)
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    wait_until(f"redis-server {pid} to end", gone, timeout, interval=0.01)
