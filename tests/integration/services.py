"""Services a test starts of its own on loopback (Pushgateway, Prometheus, redis-server):
a port to put one on, a wait until it (or anything else) is ready, and the start and stop."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from core.readiness import NotReady, free_port, wait_until

__all__ = ["after_a_whole_check", "free_port", "installed", "running", "wait_until"]

T = TypeVar("T")


def after_a_whole_check(watcher, timeout: float = 120) -> None:
    """Until the API's ``watcher`` (its model holder, which checks the production alias, or
    its outreach list) has run a whole check begun after this call (checks run one after
    another: the second to end began after now). The bound only turns a hang into a failure."""
    seen = watcher.checks
    wait_until(f"the {type(watcher).__name__} to check twice more",
               lambda: watcher.checks >= seen + 2, timeout, interval=0.01)  # fmt: skip


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
        except NotReady as exc:
            pytest.fail(f"{exc}\n{log_path.read_text()[-3000:]}")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
