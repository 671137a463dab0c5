"""The agent's timed jobs (agent/jobs.py) on a real scheduler and journal: the scheduler lives and
dies with its task, a contract's activation mark is journaled when its moment comes, and only
moments still ahead are scheduled."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent.jobs import Jobs
from agent.journal_thread import AsyncJournal
from agent.segment import ActiveContract
from agent.systemd import Notifier
from contracts.chain import EntryKind
from contracts.journal_events import ContractChange
from contracts.loader import check_mapping
from contracts.schema_serialize import format_time
from tests.agent.conftest import tank_document
from tests.agent.helpers import journal_entries
from tests.waiting import eventually

HASH = "cd" * 32


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _active(valid_from_ms: int, valid_until_ms: int) -> ActiveContract:
    doc = tank_document(valid_from=format_time(valid_from_ms), valid_until=format_time(valid_until_ms))
    return ActiveContract(contract=check_mapping(doc), signed=b"", hash=HASH)


def _jobs(journal: AsyncJournal) -> Jobs:
    return Jobs(journal, Notifier(env={}), lambda: "status", wall_ms)


async def test_the_scheduler_runs_while_its_task_runs_and_stops_when_it_is_cancelled(
        tmp_path: Path) -> None:
    async with AsyncJournal(tmp_path / "journal.db") as journal:
        jobs = _jobs(journal)
        assert not jobs.scheduler.running
        task = asyncio.create_task(jobs.run(), name="jobs")
        await eventually(lambda: jobs.scheduler.running, 5, "the scheduler started")
        assert {j.id for j in jobs.scheduler.get_jobs()} == {"heartbeat", "retention"}
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled() and not jobs.scheduler.running


async def test_an_activation_mark_is_journaled_when_valid_from_comes(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with AsyncJournal(path) as journal:
        jobs = _jobs(journal)
        now = wall_ms()
        jobs.schedule_contract(_active(now + 300, now + 3_600_000))  # before start: held pending
        task = asyncio.create_task(jobs.run(), name="jobs")
        try:
            marks = await eventually(lambda: journal_entries(path, {EntryKind.CONTRACT}), 5,
                                     "the activation mark")
            pending = {j.id.split(":")[0] for j in jobs.scheduler.get_jobs()}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [(m.body["event"], m.body["hash"]) for m in marks] == [
        (ContractChange.ACTIVATION_DUE.value, HASH)]
    assert marks[0].ts_ms >= now + 300  # not before its moment
    assert ContractChange.EXPIRY_DUE.value in pending  # the expiry is still ahead


def test_only_moments_still_ahead_are_scheduled(tmp_path: Path) -> None:
    jobs = _jobs(AsyncJournal(tmp_path / "journal.db"))  # never opened: nothing fires here
    now = wall_ms()
    jobs.schedule_contract(_active(now - 1_000, now + 3_600_000))  # already valid
    marks = {j.id for j in jobs.scheduler.get_jobs()} - {"heartbeat", "retention"}
    assert marks == {f"{ContractChange.EXPIRY_DUE.value}:{HASH[:16]}"}
