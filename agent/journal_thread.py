"""The journal on its own thread, so a durable commit (an fsync) never stalls the event loop.

SQLite connections belong to the thread that opened them; one single-thread executor opens the
journal and runs every call, so calls are serialised in submission order — the scan loop's cycle
entries and the uplink's acks never interleave inside a transaction.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from agent.journal import SqliteJournal
from contracts.chain import Entry, EntryKind
from contracts.chain_rows import Row

T = TypeVar("T")


class AsyncJournal:
    def __init__(self, path: str | Path, *, budget_bytes: int | None = None) -> None:
        self._path, self._budget = path, budget_bytes
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._journal: SqliteJournal | None = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    @property
    def sync(self) -> SqliteJournal:
        """The underlying journal; only for calls made from the journal thread."""
        if self._journal is None:
            raise RuntimeError("journal is not open")
        return self._journal

    async def open(self) -> None:
        def _open() -> SqliteJournal:
            j = SqliteJournal(self._path, budget_bytes=self._budget)
            j.open()
            return j
        self._journal = await self._call(_open)

    async def close(self) -> None:
        if self._journal is not None:
            await self._call(self._journal.close)
            self._journal = None
        self._pool.shutdown(wait=True)

    async def __aenter__(self) -> AsyncJournal:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the journal's thread (for modules that keep their own tables in the
        journal file, e.g. agent/journal_signing.py)."""
        return await self._call(fn)

    async def append_many(self, items: Sequence[tuple[EntryKind, Mapping[str, Any], int]]) -> list[Entry]:
        return await self._call(self.sync.append_many, items)

    async def append(self, kind: EntryKind, body: Mapping[str, Any], ts_ms: int) -> Entry:
        return await self._call(self.sync.append, kind, body, ts_ms)

    async def read(self, from_seq: int, limit: int) -> list[Entry]:
        return await self._call(self.sync.read, from_seq, limit)

    async def read_tolerant(self, from_seq: int, limit: int) -> tuple[list[Entry], list[tuple[int, str]]]:
        return await self._call(self.sync.read_tolerant, from_seq, limit)

    async def read_rows(self, from_seq: int, limit: int) -> tuple[list[Row], list[tuple[int, str]]]:
        return await self._call(self.sync.read_rows, from_seq, limit)

    async def head(self) -> tuple[int, bytes]:
        return await self._call(self.sync.head)

    async def ack(self, seq: int) -> None:
        await self._call(self.sync.ack, seq)

    async def acked_seq(self) -> int:
        return await self._call(self.sync.acked_seq)

    async def low_water(self) -> int:
        return await self._call(self.sync.low_water)

    async def enforce_budget(self) -> int:
        return await self._call(self.sync.enforce_budget)

    async def save_checkpoint(self, name: str, data: bytes, seq: int, ts_ms: int) -> None:
        await self._call(self.sync.save_checkpoint, name, data, seq, ts_ms)

    async def save_checkpoint_at_head(self, name: str, data: bytes, ts_ms: int) -> None:
        """save_checkpoint valid as of the journal's head, read and saved in one hop to the
        journal's thread (the scan loop checkpoints most cycles while a ramp runs: a hop for the
        head alone cost it a thread wake-up and a loop wake-up each)."""
        journal = self.sync
        await self._call(lambda: journal.save_checkpoint(name, data, journal.head()[0], ts_ms))

    async def load_checkpoint(self, name: str) -> tuple[bytes, int, int] | None:
        return await self._call(self.sync.load_checkpoint, name)
