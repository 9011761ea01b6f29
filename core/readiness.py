"""A loopback port for a service of our own, and a wait until something is ready.

The demo, the benchmarks and the tests start servers (``churn serve``, redis-server,
Prometheus, the Pushgateway) and wait for them; this is the one way they do both.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Ports this process handed out: two servers started together must not get the same one.
_HANDED_OUT: set[int] = set()


class NotReady(TimeoutError):
    """What was waited for did not happen in time; the message names it and the last value."""


def port_free(host: str, port: int) -> bool:
    """Whether nobody listens on ``host:port`` now."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now, and never one this process was handed before."""
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

    After ``timeout`` s, ``NotReady`` naming ``what`` and the last value seen (never a
    sleep past the deadline). An exception in ``ignore`` counts as "not yet"; any other
    propagates at once, so a check can fail fast when the thing it waits on has died.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except ignore as exc:
            last: object = exc
        else:
            if done(value):
                return value
            last = value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotReady(f"waited {timeout:g} s for {what}; last seen: {last!r:.2000}")
        time.sleep(min(interval, remaining))
