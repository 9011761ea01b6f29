"""Services a test starts of its own on loopback (Pushgateway, Prometheus) and stops."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


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
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not answers(ready_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"{Path(command[0]).name} did not start: {log_path.read_text()[-3000:]}"
                )
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
