"""raise_if_cancelled: a cancellation swallowed by a library still stops our loops."""
from __future__ import annotations

import asyncio

import pytest

from transport.cancel import raise_if_cancelled


async def test_a_swallowed_cancellation_is_raised_at_the_next_checkpoint() -> None:
    reached: list[str] = []

    async def worker() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass  # what Python 3.11's asyncio.wait_for does when the cancel races a result
        reached.append("after the swallow")
        raise_if_cancelled()
        reached.append("never")

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reached == ["after the swallow"]


async def test_no_false_alarm_after_a_timeout_handled_its_own_cancel() -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
    raise_if_cancelled()  # the timeout undid its own request: nothing pending
