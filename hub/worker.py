"""CPU-bound work off the event loop: decoding, validating and signing contracts.

The hub's event loop serves the API (and, until sync-perf moves it, the MQTT side): a 2,048-point
contract takes a noticeable fraction of a second to decode, validate and sign, and once took 25 s
with the old quadratic checks, during which `/health` did not answer. `CpuWorker.run` hands such a
function to a worker thread, with at most `slots` running at once so a burst of submissions
queues instead of starving the machine (2 cores); the loop keeps answering meanwhile (the GIL is
released to it at every switch interval, 5 ms by default).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

CPU_SLOTS = 2
"""Concurrent CPU-bound jobs: one per core of the smallest supported hub machine."""


class CpuWorker:
    """Runs blocking, CPU-bound functions in threads, at most `slots` at a time."""

    def __init__(self, slots: int = CPU_SLOTS) -> None:
        self._slots = asyncio.Semaphore(slots)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` in a worker thread; its exceptions propagate unchanged."""
        async with self._slots:
            return await asyncio.to_thread(fn, *args, **kwargs)
