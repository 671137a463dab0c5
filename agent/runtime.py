"""The agent process: one AsyncExitStack for resources, one TaskGroup for the work.

Tasks: `scan` (the loop; never waits on the network), `uplink` (MQTT, only if a broker is
configured), and an apscheduler AsyncIOScheduler for heartbeats, journal retention and the
activation/expiry marks. Jobs only journal and report; the engine acts on time itself, so when a
job fires never changes what the engine does (the fired job is a journaled fact, not an input).
"""
from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.config import AgentConfig
from agent.contract_store import ContractStore
from agent.journal_signing import JournalSigner, default_key_path, load_or_create_key
from agent.journal_thread import AsyncJournal
from agent.link import DeviceLink, DeviceLinkError
from agent.modbus import ModbusLink
from agent.scan import ActiveContract, Connectivity, CycleReport, ScanLoop
from agent.systemd import Notifier
from agent.uplink import LAST_CONTACT, Uplink, wall_ms
from transport.backoff import Backoff, Retrier
from contracts.journal_events import AgentEvent, ContractBody, ContractChange, agent_event_body, item
from contracts.errors import ContractRefused, SigningKeyError
from contracts.signing import load_public_key

log = logging.getLogger("fieldpact.agent")

HEARTBEAT_S = 30
UPLINK_RESTART = Backoff(initial_s=1.0, max_s=60.0, jitter=0.3)
"""A crashed uplink restarts after 1 s, backing off to a minute if it keeps failing."""
RETENTION_S = 60


class Agent:
    def __init__(self, cfg: AgentConfig, *, link: DeviceLink | None = None,
                 notifier: Notifier | None = None, reconnect: Backoff | None = None) -> None:
        self.cfg, self.reconnect = cfg, reconnect
        self.link = link or ModbusLink(cfg.modbus.host, cfg.modbus.port, timeout_s=cfg.modbus.timeout_s)
        self.notifier = notifier or Notifier()
        self.boot_id = uuid.uuid4().hex
        self.journal = AsyncJournal(cfg.journal, budget_bytes=cfg.journal_budget_mb * 1024 * 1024)
        self.conn = Connectivity(standalone=cfg.broker is None, online=False,
                                 last_contact_ms=wall_ms())
        self.scan = ScanLoop(self.journal, self.link, self.conn, on_cycle=self._on_cycle)
        self.store: ContractStore | None = None
        self.uplink: Uplink | None = None
        self.started = asyncio.Event()
        self.scheduler: AsyncIOScheduler | None = None

    def _on_cycle(self, report: CycleReport) -> None:
        if report.healthy:
            self.notifier.ready(self._status())
            self.notifier.healthy_cycle()
        if self.uplink is not None:
            self.uplink.on_cycle(report)

    def _status(self) -> str:
        seg = self.scan.segment
        if seg is None:
            return "no contract"
        c = seg.active.contract
        safe = seg.actuator.safe_view()
        unconfirmed = ""
        if safe is not None and safe.unconfirmed:  # the device does not show safe_state yet
            unconfirmed = f" safe_unconfirmed={','.join(safe.unconfirmed)}"
        return (f"{c.contract}@{c.version} mode={seg.state.mode.value} step={seg.step_name()} "
                f"online={self.conn.online}{unconfirmed}")

    async def run(self) -> None:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.journal)
            try:
                await self.link.connect()
            except DeviceLinkError as exc:  # the device may be down at boot: run anyway, reads go BAD
                log.warning("modbus_unreachable_at_start reason=%s", exc)
            stack.push_async_callback(self.link.close)
            self.store = ContractStore(self.journal, load_public_key(self.cfg.trusted_key),
                                       self.cfg.device)
            await self.journal.append(*item(agent_event_body(
                AgentEvent.AGENT_STARTED, boot_id=self.boot_id, device=self.cfg.device,
                standalone=self.cfg.broker is None), wall_ms()))
            saved = await self.journal.load_checkpoint(LAST_CONTACT)
            if saved is not None and self.cfg.broker is not None:
                self.conn.last_contact_ms = int(saved[0])  # the budget survives restarts
            self.scheduler = scheduler = self._scheduler()
            scheduler.start()
            stack.callback(scheduler.shutdown, wait=False)
            self.scan.on_offer = self._schedule_contract
            restored = await self.store.restore(wall_ms())
            if restored.resume is not None:
                self._schedule_contract(restored.resume[0])
            if restored.pending is not None:
                self.scan.offer(restored.pending)
            running = restored.resume[0].hash if restored.resume else None
            await self._load_local_contract(running)
            stack.callback(self.notifier.stopping)
            self.started.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.scan.run(restored.resume), name="scan")
                if self.cfg.broker is not None:
                    self.uplink = Uplink(self.cfg, self.journal, self.scan, self.store, self.conn,
                                         reconnect=self.reconnect, signer=self._signer())
                    tg.create_task(self._supervised_uplink(self.uplink), name="uplink")

    def _signer(self) -> JournalSigner | None:
        """The journal key, made at first start (fixed interface 6). A key that cannot be read or
        made must not stop the scan loop: the uplink then sends unsigned batches, which a hub
        holding this device's key refuses with a `forged_batch` alarm an operator will see."""
        path = self.cfg.journal_key or default_key_path(self.cfg.journal)
        try:
            return JournalSigner(load_or_create_key(path), self.cfg.device)
        except SigningKeyError as exc:
            log.error("journal_key_unavailable path=%s error=%s", path, exc)
            return None

    async def _supervised_uplink(self, uplink: Uplink) -> None:
        """Run the uplink; if it fails, journal why and restart it after a pause. Network code
        must never take the scan loop down with it (safety never waits for the network)."""
        pause = Retrier(UPLINK_RESTART)
        while True:
            try:
                await uplink.run()
            except Exception as exc:  # noqa: BLE001 - any uplink bug: isolate, record, restart
                log.exception("uplink_failed")
                self.conn.set_online(False, self.conn.last_contact_ms or wall_ms())
                await self.journal.append(*item(agent_event_body(
                    AgentEvent.UPLINK_FAILED, error=f"{type(exc).__name__}: {exc}"[:500]),
                    wall_ms()))
                await asyncio.sleep(pause.next_delay())

    async def _load_local_contract(self, running: str | None) -> None:
        """The contract file from the config, offered unless it is the one being resumed (a
        restart must continue the step it was in, not start the contract over)."""
        path: Path | None = self.cfg.contract
        if path is None or self.store is None:
            return
        try:
            active = await self.store.receive(path.read_bytes(), wall_ms())
        except ContractRefused as exc:
            log.warning("local_contract_refused path=%s refusal=%s", path, exc.refusal.value)
            return
        if active.hash != running:
            self.scan.offer(active)

    def offer(self, active: ActiveContract) -> None:
        self.scan.offer(active)

    def _scheduler(self) -> AsyncIOScheduler:
        s = AsyncIOScheduler(timezone=UTC)
        s.add_job(self._heartbeat, "interval", seconds=HEARTBEAT_S, id="heartbeat")
        s.add_job(self._retention, "interval", seconds=RETENTION_S, id="retention")
        return s

    def _schedule_contract(self, active: ActiveContract) -> None:
        """Date jobs at the contract's valid_from and valid_until. They journal that the moment
        came; the engine switches on its own clock, so a late or missed job changes nothing."""
        c, now = active.contract, wall_ms()
        if self.scheduler is None:
            return
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
            event=event, contract=c.contract, version=c.version, hash=active.hash), wall_ms()))
        log.info("contract_mark event=%s contract=%s version=%s", event, c.contract, c.version)

    async def _heartbeat(self) -> None:
        self.notifier.status(self._status())
        log.info("heartbeat %s", self._status())

    async def _retention(self) -> None:
        dropped = await self.journal.enforce_budget()
        if dropped:
            log.warning("journal_retention dropped=%s", dropped)


def run_forever(cfg: AgentConfig) -> int:
    """Entry point for `fieldpact agent run`: runs until SIGTERM/SIGINT, then shuts down cleanly
    (journal closed, STOPPING=1 to systemd). Returns the exit code."""
    return asyncio.run(_main(Agent(cfg)))


async def _main(agent: Agent) -> int:
    task = asyncio.create_task(agent.run(), name="agent")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("agent_stopped reason=signal")
    return 0
