"""The collector settled when the scan loop starts (agent/gc_pauses.py): start-up's objects are in
the permanent generation, so a later full collection does not walk them."""
from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from agent.journal_thread import AsyncJournal
from agent.link import MemoryLink
from agent.scan import Connectivity, ScanLoop
from tests.waiting import eventually


async def test_the_scan_loop_freezes_what_start_up_left_before_its_first_cycle(tmp_path: Path) -> None:
    async with AsyncJournal(tmp_path / "j.db") as journal:
        loop = ScanLoop(journal, MemoryLink(), Connectivity(standalone=True))
        task = asyncio.create_task(loop.run(), name="scan-under-test")
        try:
            await eventually(lambda: gc.get_freeze_count() > 10_000, 5, "start-up's objects frozen")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert gc.get_freeze_count() > 10_000  # modules, classes, functions: a process's start-up
