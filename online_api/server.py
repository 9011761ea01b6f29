"""``churn serve`` as a child process: started, awaited until ready, stopped (demo and tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from core.readiness import NotReady, wait_until
from core.settings import Settings


def start(settings: Settings, port: int, log: Path, workers: int = 1) -> subprocess.Popen:
    """``churn serve`` with these settings on ``port``; its output goes to ``log``."""
    churn = Path(sys.executable).with_name("churn")
    command = [str(churn), "serve", "--port", str(port), "--workers", str(workers)]
    with log.open("w") as out:
        return subprocess.Popen(
            command,
            env=os.environ | settings.as_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stop() signals the whole group: uvicorn and its workers
        )


def get_json(url: str, token: str | None = None, timeout: float = 5) -> tuple[int, dict]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_ready(base: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    """Until ``/ready`` answers 200; RuntimeError with the server's log if it exits or stalls."""

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"churn serve exited ({process.returncode}):\n{_tail(log)}")
        return get_json(f"{base}/ready", timeout=2)[0] == 200

    try:
        wait_until(
            "churn serve to be ready", ready, timeout, interval=0.2, ignore=(OSError, ValueError)
        )
    except NotReady as exc:
        raise RuntimeError(f"{exc}:\n{_tail(log)}") from exc


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"
