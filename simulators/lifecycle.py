"""Started and stopped: the async context manager every simulator that serves is.

Rules: `async with x:` is `await x.start()` then, whatever happens, `await x.stop()`; `start` raises
when it cannot serve (so the body never runs), and `stop` is idempotent (so it is safe after a
`start` that failed halfway, and twice).
"""
from __future__ import annotations

from types import TracebackType
from typing import Self


class Served:
    """Base of SimDevice and SimLine: subclasses define `start` and `stop`."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
