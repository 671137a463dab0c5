"""Journal first survives `kill -9`: a writer process is killed mid-stream and the file is reopened."""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from agent.journal import SqliteJournal
from contracts.chain import EntryKind

WRITER = Path(__file__).with_name("journal_writer.py")
LINES_BEFORE_KILL = 400
"""Enough committed cycles that the kill lands while the writer is mid-stream, not at start-up."""


async def run_writer_and_kill(db: Path) -> int:
    """Start the writer, read LINES_BEFORE_KILL committed seqs, SIGKILL it; the last seq printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WRITER), str(db), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    last = 0
    try:
        async with asyncio.timeout(30):
            for _ in range(LINES_BEFORE_KILL):
                line = await proc.stdout.readline()
                assert line, "writer exited before it was killed"
                last = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(10):
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return last


async def test_killed_writer_leaves_an_intact_gapless_journal_that_resumes(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    last_printed = await run_writer_and_kill(db)
    with SqliteJournal(db) as journal:
        assert journal.verify() is None
        head_seq, head_hash = journal.head()
        assert head_seq >= last_printed >= LINES_BEFORE_KILL * 4
        assert head_seq % 4 == 0, "a cycle's 4 entries commit together or not at all"
        seqs = [e.seq for e in journal.read(1, head_seq + 10)]
        assert seqs == list(range(1, head_seq + 1))
        nxt = journal.append(EntryKind.BOOT, {"boot_id": "after-crash"}, 1_800_000_000_000)
        assert nxt.seq == head_seq + 1 and nxt.prev_hash == head_hash
        assert journal.verify() is None


async def test_two_crashes_in_a_row_still_leave_one_chain(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    first = await run_writer_and_kill(db)
    second = await run_writer_and_kill(db)
    assert second > first
    with SqliteJournal(db) as journal:
        assert journal.verify() is None
        assert journal.head()[0] >= second
