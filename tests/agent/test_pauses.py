"""Process-wide pauses settled when the scan loop starts (agent/pauses.py): start-up's objects in
the permanent generation (a later full collection does not walk them), and the interpreter lock's
switch interval well under the final approach to a deadline."""
from __future__ import annotations

import asyncio
import gc
import sys
from pathlib import Path

from agent.journal_thread import AsyncJournal
from agent.link import MemoryLink
from agent.pauses import SWITCH_INTERVAL_S
from agent.scan import Connectivity, ScanLoop
from agent.timing import SPIN_S
from tests.waiting import eventually


async def test_the_scan_loop_freezes_start_up_and_bounds_the_lock_before_its_first_cycle(
        tmp_path: Path) -> None:
    async with AsyncJournal(tmp_path / "j.db") as journal:
        loop = ScanLoop(journal, MemoryLink(), Connectivity(standalone=True))
        task = asyncio.create_task(loop.run(), name="scan-under-test")
        try:
            await eventually(lambda: gc.get_freeze_count() > 10_000, 5, "start-up's objects frozen")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert gc.get_freeze_count() > 10_000  # modules, classes, functions: a process's start-up
    assert sys.getswitchinterval() == SWITCH_INTERVAL_S < SPIN_S / 2
