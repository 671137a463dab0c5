"""The agent's timed jobs on an apscheduler AsyncIOScheduler: heartbeat, journal retention, and the
activation/expiry marks of each contract.

Jobs only journal and report; the engine acts on time itself, so when a job fires never changes what
the engine does (the fired job is a journaled fact, not an input). The scheduler runs as one task of
the agent's TaskGroup (`run`): started when the task starts, shut down when it is cancelled. A
contract scheduled before that is held by apscheduler as a pending job and added at start.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.journal_thread import AsyncJournal
from agent.segment import ActiveContract
from agent.systemd import Notifier
from contracts.journal_events import ContractBody, ContractChange, item
from contracts.types import EpochMs

log = logging.getLogger("fieldpact.agent")

HEARTBEAT_S = 30
"""How often the status line goes to systemd and the log: often enough to read a hung agent off
`systemctl status`, rare enough to stay out of the way."""

RETENTION_S = 60
"""How often the journal budget is enforced; the budget has headroom for far more than a minute."""


class Jobs:
    """The scheduler and its jobs. `status` renders the one-line status the heartbeat reports."""

    def __init__(self, journal: AsyncJournal, notifier: Notifier, status: Callable[[], str],
                 clock_ms: Callable[[], EpochMs]) -> None:
        self.journal, self.notifier = journal, notifier
        self._status, self._clock_ms = status, clock_ms
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.scheduler.add_job(self._heartbeat, "interval", seconds=HEARTBEAT_S, id="heartbeat")
        self.scheduler.add_job(self._retention, "interval", seconds=RETENTION_S, id="retention")

    async def run(self) -> None:
        """Run the scheduler until cancelled (a task of the agent's TaskGroup)."""
        self.scheduler.start()
        try:
            await asyncio.Event().wait()  # jobs run on the loop; this task only owns the scheduler
        finally:
            self.scheduler.shutdown(wait=False)

    def schedule_contract(self, active: ActiveContract) -> None:
        """Date jobs at the contract's valid_from and valid_until. They journal that the moment
        came; the engine switches on its own clock, so a late or missed job changes nothing."""
        c, now = active.contract, self._clock_ms()
        for event, at in ((ContractChange.ACTIVATION_DUE, c.valid_from),
                          (ContractChange.EXPIRY_DUE, c.valid_until)):
            if at > now:
                self.scheduler.add_job(self._mark, "date", id=f"{event}:{active.hash[:16]}",
                                       run_date=datetime.fromtimestamp(at / 1000, UTC),
                                       args=[event, active], replace_existing=True,
                                       misfire_grace_time=None)

    async def _mark(self, event: ContractChange, active: ActiveContract) -> None:
        c = active.contract
        await self.journal.append(*item(ContractBody(
            event=event, contract=c.contract, version=c.version, hash=active.hash), self._clock_ms()))
        log.info("contract_mark event=%s contract=%s version=%s", event, c.contract, c.version)

    async def _heartbeat(self) -> None:
        self.notifier.status(self._status())
        log.info("heartbeat %s", self._status())

    async def _retention(self) -> None:
        dropped = await self.journal.enforce_budget()
        if dropped:
            log.warning("journal_retention dropped=%s", dropped)
