"""Helpers for agent tests: read a live journal read-only, poll with a deadline."""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from agent.config import AgentConfig
from agent.journal import _SELECT, _row_to_entry
from agent.modbus import ModbusLink
from agent.runtime import Agent
from transport.backoff import Backoff
from contracts.chain import Entry, EntryKind

T = TypeVar("T")


def journal_entries(path: Path, kinds: set[EntryKind] | None = None) -> list[Entry]:
    """Every entry of a journal another connection is writing (WAL allows a concurrent reader)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute(f"{_SELECT} ORDER BY seq").fetchall()
    entries = [_row_to_entry(r) for r in rows]
    return [e for e in entries if kinds is None or e.kind in kinds]


async def eventually(check: Callable[[], T | None], timeout_s: float, what: str,
                     every_s: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            while not (result := check()):
                await asyncio.sleep(every_s)
            return result
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


async def eventually_async(check: Callable[[], Awaitable[T | None]], timeout_s: float,
                           what: str, every_s: float = 0.05) -> T:
    try:
        async with asyncio.timeout(timeout_s):
            while not (result := await check()):
                await asyncio.sleep(every_s)
            return result
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


def events(path: Path, name: str) -> list[Entry]:
    """Entries whose body names `event` = name."""
    return [e for e in journal_entries(path) if e.body.get("event") == name]


@contextlib.asynccontextmanager
async def running_agent(cfg: AgentConfig, *,
                        reconnect: Backoff | None = None) -> AsyncIterator[Agent]:
    """An in-process Agent on a real ModbusLink, started and (on exit) cancelled."""
    agent = Agent(cfg, link=ModbusLink(cfg.modbus.host, cfg.modbus.port,
                                       timeout_s=cfg.modbus.timeout_s), reconnect=reconnect)
    task = asyncio.create_task(agent.run(), name="agent-under-test")
    try:
        async with asyncio.timeout(10):
            await agent.started.wait()
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
