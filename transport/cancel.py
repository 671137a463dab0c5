"""Asyncio helpers shared by the agent and the hub."""
from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that a library swallowed.

    Python 3.11's `asyncio.wait_for` loses a cancellation that arrives just as the awaited future
    completes (CPython gh-86296, fixed in 3.12). pymodbus awaits every response through it, and
    aiomqtt every publish, so a task can be cancelled and keep running. Every long-running loop calls
    this once per iteration: `Task.cancelling()` still counts the request, so we honour it here.
    Outside `asyncio.timeout` blocks (which undo their own requests) a non-zero count always means
    a real, pending cancellation."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
