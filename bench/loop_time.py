"""A coroutine's own time on the event loop, slice by slice: what it costs the loop it runs on,
not counting what other tasks do while it awaits.

Rules: `Timed(coro, spent, step)` is awaited in place of `coro`; each slice (from one resumption of
the coroutine to its next await, or its end) is added to `spent` under `step`, with the longest
slice kept; an exception thrown into the awaiting task is handed to the coroutine, as `await` does.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Generator
from typing import Any


class Spent:
    """The engine's own time on the loop, by step name: each slice a coroutine of its runs
    between two awaits (hub/rollout_engine.py does all its work on the API's loop, no threads),
    so what other tasks do while it awaits is not counted."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.passes: dict[str, int] = defaultdict(int)
        self.longest: dict[str, float] = defaultdict(float)

    def add(self, step: str, seconds: float) -> None:
        self.total[step] += seconds
        self.longest[step] = max(self.longest[step], seconds)


class Timed:
    """Awaits `coro`, adding the time of each of its slices to `spent` under `step`."""

    def __init__(self, coro: Awaitable[None], spent: Spent, step: str) -> None:
        self.coro, self.spent, self.step = coro, spent, step

    def __await__(self) -> Generator[Any, Any, None]:
        it = self.coro.__await__()
        value: Any = None
        error: BaseException | None = None
        while True:
            t0 = time.perf_counter()
            try:
                out = it.send(value) if error is None else it.throw(error)
            except StopIteration:
                self.spent.add(self.step, time.perf_counter() - t0)
                return
            self.spent.add(self.step, time.perf_counter() - t0)
            try:
                value, error = (yield out), None
            except BaseException as exc:  # noqa: BLE001 - handed to the coroutine, as await does
                value, error = None, exc

