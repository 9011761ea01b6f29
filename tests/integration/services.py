"""Services a test starts of its own on loopback (Pushgateway, Prometheus, redis-server):
a port to put one on, a wait until it (or anything else) is ready, and the start and stop."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

# Ports handed out in this test run: two servers started together must not get the same one.
_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now, and never one this test run was handed before."""
    while True:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_until(
    what: str,
    check: Callable[[], T],
    timeout: float,
    interval: float = 0.1,
    *,
    done: Callable[[T], object] = bool,
    ignore: tuple[type[Exception], ...] = (),
) -> T:
    """The first value of ``check()`` that ``done`` accepts, polled every ``interval`` s.

    After ``timeout`` s, an AssertionError naming ``what`` and the last value seen (never a
    sleep past the deadline). An exception in ``ignore`` counts as "not yet"; any other
    propagates at once, so a check can fail fast when the thing it waits on has died.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: object = check()
        except ignore as exc:
            last = exc
        else:
            if done(last):
                return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"waited {timeout:g} s for {what}; last seen: {last!r:.2000}")
        time.sleep(min(interval, remaining))


def after_a_whole_check(holder, timeout: float = 120) -> None:
    """Until the API's model holder has run a whole check of the production alias begun
    after this call (checks run one after another: the second to end began after now).
    The bound only turns a hang into a failure."""
    seen = holder.checks
    wait_until("the holder to check the production alias twice more",
               lambda: holder.checks >= seen + 2, timeout, interval=0.01)  # fmt: skip


def installed(name: str) -> str:
    """The binary's path; skips the test when the system deps have not installed it."""
    binary = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(binary).is_file():
        pytest.skip(f"{name} is not installed (the system deps install it)")
    return binary


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def running(
    command: list[str], ready_url: str, log_path: Path, timeout: float = 30
) -> Iterator[None]:
    """``command`` running until the block ends, once ``ready_url`` answers 200; the test
    fails with the log's tail if it exits or does not get ready within ``timeout``."""
    name = Path(command[0]).name
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited ({proc.returncode}): {log_path.read_text()[-3000:]}")
        return answers(ready_url)

    try:
        try:
            wait_until(f"{name} to answer {ready_url}", ready, timeout, interval=0.05)
        except AssertionError as exc:
            pytest.fail(f"{exc}\n{log_path.read_text()[-3000:]}")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
