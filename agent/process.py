"""The agent process: one AsyncExitStack for resources, one TaskGroup for the work.

`Agent.run` in order: open the resources (journal, device link), journal the start and restore the
hub-contact budget, restore the contracts (every one to resume, those pending, the local files:
an agent runs several contracts side by side, agent/roster.py),
then run the tasks: `scan` (the loop; never waits on the network), `jobs` (the scheduler of
agent/jobs.py: heartbeat, retention, contract marks), `fallback` (agent/fallback.py: a contract
that trips within its rollout health window is replaced by its known-good one, hub or not) and
`uplink` (MQTT, only if a broker is configured; restarted after a failure, never taking the scan
loop with it).
"""
from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

from agent.config import AgentConfig
from agent.contract_store import ContractStore
from agent.errors import DeviceLinkError
from agent.fallback import Fallback, WatchedJournal
from agent.jobs import Jobs
from agent.journal_signing import JournalSigner, default_key_path, load_or_create_key
from agent.link import DeviceLink
from agent.endpoints import EndpointSet
from agent.scan import Connectivity, CycleReport, ScanLoop
from agent import roster
from agent.segment import ActiveContract, Resume
from agent.systemd import Notifier
from agent.uplink import LAST_CONTACT, Uplink, wall_ms
from contracts.errors import ContractRefused, SigningKeyError
from contracts.journal_events import AgentEvent, agent_event_body, item
from contracts.schema import Contract
from contracts.signing import load_public_key
from transport.backoff import Backoff, Retrier

log = logging.getLogger("fieldpact.agent")

UPLINK_RESTART = Backoff(initial_s=1.0, max_s=60.0, jitter=0.3)
"""A crashed uplink restarts after 1 s, backing off to a minute if it keeps failing."""



class Agent:
    def __init__(self, cfg: AgentConfig, *, link: DeviceLink | None = None,
                 notifier: Notifier | None = None, reconnect: Backoff | None = None) -> None:
        self.cfg, self.reconnect = cfg, reconnect
        self.link = link or EndpointSet.from_config(cfg.all_endpoints())
        self.notifier = notifier or Notifier()
        self.boot_id = uuid.uuid4().hex
        self.journal = WatchedJournal(cfg.journal, budget_bytes=cfg.journal_budget_mb * 1024 * 1024)
        self.conn = Connectivity(standalone=cfg.broker is None, online=False,
                                 last_contact_ms=wall_ms())
        self.scan = ScanLoop(self.journal, self.link, self.conn, on_cycle=self._on_cycle,
                             model_after_s=cfg.model_divergence_after_s)
        self.jobs = Jobs(self.journal, self.notifier, self.status, wall_ms)
        self.fallback = Fallback(self.journal, self.scan, wall_ms)
        self.store: ContractStore | None = None
        self.uplink: Uplink | None = None
        self.started = asyncio.Event()

    def _on_cycle(self, report: CycleReport) -> None:
        self.fallback.on_cycle(report)
        if report.healthy:
            self.notifier.ready(self.status())
            self.notifier.healthy_cycle()
        if self.uplink is not None:
            self.uplink.on_cycle(report)

    def status(self) -> str:
        """One line for systemd and the heartbeat log: each contract's mode and step (";"
        between contracts), hub reachability."""
        if not self.scan.segments:
            return "no contract"
        parts = []
        for _, seg in sorted(self.scan.segments.items()):
            c = seg.active.contract
            safe = seg.actuator.safe_view()
            unconfirmed = ""
            if safe is not None and safe.unconfirmed:  # the device does not show safe_state yet
                unconfirmed = f" safe_unconfirmed={','.join(safe.unconfirmed)}"
            parts.append(f"{c.contract}@{c.version} mode={seg.state.mode.value} "
                         f"step={seg.step_name()}{unconfirmed}")
        return f"{'; '.join(parts)} online={self.conn.online}"

    def _check(self, contract: Contract) -> None:
        """What the store refuses beyond the signature: an endpoint this agent does not have,
        write points overlapping a running contract's (ContractRefused, journaled, answered)."""
        if isinstance(self.link, EndpointSet):
            self.link.check_contract(contract)
        roster.check(contract, self.scan.segments)

    async def run(self) -> None:
        """Run until cancelled; resources are released in reverse order on the way out."""
        async with AsyncExitStack() as stack:
            await self._open(stack)
            await self._record_start()
            store = ContractStore(self.journal, load_public_key(self.cfg.trusted_key), self.cfg.device,
                                  check=self._check)
            self.store = store
            resume = await self._restore_contracts(store)
            stack.callback(self.notifier.stopping)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.jobs.run(), name="jobs")
                tg.create_task(self.fallback.run(), name="fallback")
                tg.create_task(self.scan.run(resume), name="scan")
                if self.cfg.broker is not None:
                    self.uplink = Uplink(self.cfg, self.journal, self.scan, store, self.conn,
                                         reconnect=self.reconnect, signer=self._signer())
                    tg.create_task(self._supervised_uplink(self.uplink), name="uplink")
                self.started.set()

    async def _open(self, stack: AsyncExitStack) -> None:
        """The journal, then the device link. A device down at boot does not stop the agent: it
        runs anyway and its reads go BAD, which the contract's guards handle."""
        await stack.enter_async_context(self.journal)
        try:
            await self.link.connect()
        except DeviceLinkError as exc:
            log.warning("modbus_unreachable_at_start reason=%s", exc)
        stack.push_async_callback(self.link.close)

    async def _record_start(self) -> None:
        """Journal the start; restore the time of the last hub contact (the autonomy budget
        survives restarts)."""
        await self.journal.append(*item(agent_event_body(
            AgentEvent.AGENT_STARTED, boot_id=self.boot_id, device=self.cfg.device,
            standalone=self.cfg.broker is None), wall_ms()))
        saved = await self.journal.load_checkpoint(LAST_CONTACT)
        if saved is not None and self.cfg.broker is not None:
            self.conn.last_contact_ms = int(saved[0])

    async def _restore_contracts(self, store: ContractStore) -> list[Resume]:
        """Every offered contract gets its marks scheduled; the stored ones come back (the ones
        to resume are returned for the scan loop, the pending ones offered), then the local
        files."""
        self.scan.on_offer = self.jobs.schedule_contract
        restored = await self.fallback.restore(store, await store.restore(wall_ms()))
        for active, _ in restored.resumes:
            self.jobs.schedule_contract(active)
        for pending in restored.pendings:
            self.scan.offer(pending)
        running = {a.hash for a, _ in restored.resumes}
        for path in self.cfg.contract_files():
            await self._load_local_contract(store, path, running)
        return list(restored.resumes)

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

    async def _load_local_contract(self, store: ContractStore, path: Path,
                                   running: set[str]) -> None:
        """A contract file from the config, offered unless it is one being resumed (a restart
        must continue the step it was in, not start the contract over)."""
        try:
            active = await store.receive(path.read_bytes(), wall_ms())
        except ContractRefused as exc:
            log.warning("local_contract_refused path=%s refusal=%s", path, exc.refusal.value)
            return
        if active.hash not in running:
            self.scan.offer(active)

    def offer(self, active: ActiveContract) -> None:
        self.scan.offer(active)


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
