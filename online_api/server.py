"""``churn serve`` as a child process: started, awaited until ready, stopped (demo and tests)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from core.settings import Settings


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"churn serve exited ({process.returncode}):\n{_tail(log)}")
        try:
            if get_json(f"{base}/ready", timeout=2)[0] == 200:
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"churn serve not ready after {timeout:.0f} s:\n{_tail(log)}")
        time.sleep(0.2)


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
