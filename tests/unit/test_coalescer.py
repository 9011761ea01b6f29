"""The coalescer: concurrent submits share one call, in order; a failure fails only its batch."""

from __future__ import annotations

import asyncio

import pytest

from online_api.coalescer import Coalescer


def _recording(fail_on: str | None = None):
    calls: list[list[str]] = []

    async def work(keys: list[str]) -> list[str]:
        calls.append(list(keys))
        await asyncio.sleep(0)  # a real read yields to the loop: more requests queue meanwhile
        if fail_on in keys:
            raise ConnectionError(f"store down while reading {fail_on}")
        return [key.upper() for key in keys]

    return work, calls


def test_concurrent_submits_share_calls_up_to_the_batch_limit_and_keep_their_order():
    work, calls = _recording()

    async def many() -> list[str]:
        coalescer = Coalescer(work, max_batch=3)
        return await asyncio.gather(*(coalescer.submit(k) for k in "abcdefg"))

    assert asyncio.run(many()) == list("ABCDEFG")
    assert calls == [["a", "b", "c"], ["d", "e", "f"], ["g"]]


def test_one_request_at_a_time_is_a_batch_of_one():
    work, calls = _recording()

    async def one_by_one() -> list[str]:
        coalescer = Coalescer(work, max_batch=100)
        return [await coalescer.submit(k) for k in "abc"]

    assert asyncio.run(one_by_one()) == ["A", "B", "C"]
    assert calls == [["a"], ["b"], ["c"]]


def test_a_failed_call_fails_its_batch_only():
    work, calls = _recording(fail_on="b")

    async def mixed() -> list[object]:
        coalescer = Coalescer(work, max_batch=2)
        return await asyncio.gather(*(coalescer.submit(k) for k in "abc"), return_exceptions=True)

    first, second, third = asyncio.run(mixed())
    assert isinstance(first, ConnectionError) and isinstance(second, ConnectionError)
    assert "store down while reading b" in str(first)
    assert third == "C"
    assert calls == [["a", "b"], ["c"]]


def test_a_cancelled_request_does_not_disturb_the_others():
    work, _ = _recording()

    async def cancel_one() -> tuple[str, str]:
        coalescer = Coalescer(work, max_batch=10)
        doomed = asyncio.create_task(coalescer.submit("x"))
        kept = asyncio.create_task(coalescer.submit("y"))
        await asyncio.sleep(0)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return await kept, await coalescer.submit("z")

    assert asyncio.run(cancel_one()) == ("Y", "Z")
