"""LoopThread: start waits for ready or raises, stop always ends the thread (even when a
cancellation is swallowed, as Python 3.11's wait_for can), failures are kept and re-raised."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hub.loop_thread import LoopThread, LoopThreadError
from tests.waiting import eventually


async def test_stop_ends_a_loop_that_swallows_the_first_cancellation() -> None:
    swallowed = []

    async def main(ready: Callable[[], None]) -> None:
        ready()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.append(1)  # lost, as wait_for in 3.11 may lose it
        await asyncio.Event().wait()  # keeps running until cancelled again

    side = LoopThread("t-swallow", recancel_s=0.2)
    await side.start(main, 10)
    assert side.running and side.loop is not asyncio.get_running_loop()
    await side.stop(10)
    assert not side.running and swallowed == [1]


async def test_start_raises_what_failed_before_ready() -> None:
    async def main(ready: Callable[[], None]) -> None:
        raise OSError("port 1883 in use")

    side = LoopThread("t-fail-start")
    with pytest.raises(OSError, match="1883"):
        await side.start(main, 10)
    assert not side.running


async def test_start_gives_up_on_a_side_that_never_gets_ready() -> None:
    async def main(ready: Callable[[], None]) -> None:
        await asyncio.Event().wait()

    side = LoopThread("t-never-ready")
    with pytest.raises(LoopThreadError, match="not ready"):
        await side.start(main, 0.5)
    await side.stop(10)
    assert not side.running


async def test_a_failure_after_start_is_kept_and_raised_by_stop() -> None:
    async def main(ready: Callable[[], None]) -> None:
        ready()
        raise RuntimeError("store gone")

    side = LoopThread("t-fail-later")
    await side.start(main, 10)
    await eventually(lambda: not side.running, 10, "the side loop ended by its failure")
    assert isinstance(side.error, RuntimeError)
    with pytest.raises(RuntimeError, match="store gone"):
        await side.stop(10)
