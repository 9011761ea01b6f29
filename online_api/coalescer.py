"""Concurrent single-user requests joined into one online-store read and one scoring pass.

Per request, the Redis client and numpy cost far more in fixed overhead (building
a pipeline, waking for the reply, dispatching array operations) than in the work
for one user. Requests that arrive while a read is in flight wait for it to finish
and then go together: one Feast read for all their ids, one ``explain_many`` for
all their rows. Nothing waits on a timer: at one request at a time every batch is
a batch of one, and under load batches grow by themselves to the concurrency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Runs ``work(keys)`` (results in the order of ``keys``) for batches of submitted keys."""

    def __init__(self, work: Callable[[list[str]], Awaitable[list[T]]], max_batch: int) -> None:
        self._work = work
        self._max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future[T]]] = []
        self._draining = False
        self._task: asyncio.Task[None] | None = None  # referenced, so it is not collected

    async def submit(self, key: str) -> T:
        """The result for ``key``; raises what ``work`` raised for its batch."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((key, future))
        if not self._draining:
            self._draining = True
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    results = await self._work([key for key, _ in batch])
                except asyncio.CancelledError:  # shutting down: nobody waits forever
                    for _, future in batch + self._pending:
                        future.cancel()
                    raise
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():  # the request may have been cancelled
                        future.set_result(result)
        finally:
            self._draining = False
