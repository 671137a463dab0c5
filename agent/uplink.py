"""The agent's uplink: store-and-forward of the journal over MQTT, contracts and commands in.

Delivery comes from seq + ack, never from the broker (invariant 5, DESIGN pitfalls): the journal is
the queue. The sender publishes bounded batches from the hub's last ack; at most `window` batches
may be in flight unacknowledged (backpressure on a slow broker or hub). When to send again is
decided by agent/resend.py on the hub's acks alone: the ack not advancing for `ack_timeout_s`
while entries are outstanding, a duplicate ack (fast retransmit), a (re)connect. Local appends
never postpone a resend. The hub ingests idempotently by seq. An ack is made durable in the
journal before anything may be dropped for it. On every (re)connect it publishes a retained birth.
It also follows the hub's own birth (`fp/v1/_hub/status`): a new boot (the hub restarted) or a new
birth of the same boot (the hub reconnected and re-subscribed) rewinds to the ack, so what was sent
while the hub could not hear is sent again. And it notices when it cannot hear the hub: after
DEAF_AFTER ack timeouts in a row with entries outstanding (agent/resend.py) it forces a new MQTT
session, whose subscriptions are made afresh (a broker can drop a live client's subscription).

Parts: what to send next (rows read, batch built and signed, holes journaled once) in
agent/uplink_batches.py; telemetry and the retained point documents in agent/uplink_telemetry.py.
This class owns the MQTT link, the send state and the inbound messages.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable

from agent.commission_answer import CommissionResponder
from agent.config import AgentConfig
from agent.contract_store import ContractStore
from agent import resend
from agent.journal_signing import JournalSigner
from agent.journal_thread import AsyncJournal
from agent.resend import Reason, Resend, SendState
from agent.scan import Connectivity, CycleReport, ScanLoop
from agent.uplink_batches import Batches
from agent.uplink_telemetry import TelemetryPublisher
from contracts.errors import ContractRefused, EncodingError
from contracts.signing import peek_identity
from contracts.topics import HUB_STATUS, Channel, topic
from contracts.wire import Ack, Birth, CommandMessage, ContractResult, HubBirth
from transport.backoff import Backoff
from transport.mqtt import LinkDown, MqttLink, Will
from transport.cancel import raise_if_cancelled

log = logging.getLogger("fieldpact.agent.uplink")

WINDOW = 4
"""Unacknowledged batches in flight; with 500-entry batches that is 2,000 entries of backpressure."""


LAST_CONTACT = "hub:last_contact"
CONTACT_SAVE_MS = 10_000
"""Persist the last contact at most every 10 s while online: the budget is hours, so a restart
loses at most 10 s of it, for one small write per 10 s."""

KEEPALIVE_S = 5
"""MQTT keepalive (also aiomqtt's connect timeout): a half-open link to the broker is noticed within
1.5 keepalives (MQTT 3.1.2.10), and a connect attempt into a dead route gives up after 5 s."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Uplink:
    def __init__(self, cfg: AgentConfig, journal: AsyncJournal, scan: ScanLoop,
                 store: ContractStore, conn: Connectivity, *, clock: Callable[[], int] = wall_ms,
                 window: int = WINDOW, ack_timeout_s: float | None = None,
                 reconnect: Backoff | None = None, signer: JournalSigner | None = None,
                 deaf_after: int = resend.DEAF_AFTER) -> None:
        assert cfg.broker is not None
        self.cfg, self.journal, self.scan, self.store, self.conn = cfg, journal, scan, store, conn
        self.signer = signer  # signs each batch over its chain head and gaps (fixed interface 6)
        self._clock, self._window = clock, window
        self._ack_timeout_s = cfg.ack_timeout_s if ack_timeout_s is None else ack_timeout_s
        self._deaf_after = deaf_after
        self.boot_id = uuid.uuid4().hex
        self._state = SendState()
        self._wake = asyncio.Event()
        self._seen_contracts: set[bytes] = set()
        self._saved_contact = 0
        self._hub: HubBirth | None = None  # the last hub birth seen
        t = self._topic
        self.link = MqttLink(
            cfg.broker.url, client_id=f"fp-agent-{cfg.device}", username=cfg.broker.username,
            password=cfg.broker.password,
            will=Will(topic=t(Channel.STATUS), payload=b"offline", qos=1, retain=True),
            subscriptions=[(t(Channel.ACK), 1), (t(Channel.CONTRACT), 1), (t(Channel.CMD), 1),
                           (t(Channel.COMMISSION), 1), (HUB_STATUS, 1)],
            on_connect=self._on_connect, on_disconnect=self._on_disconnect,
            backoff=reconnect or Backoff(initial_s=0.2, max_s=5.0, jitter=0.3),
            keepalive_s=KEEPALIVE_S)
        self.commissioning = CommissionResponder(scan, self._send_commission_report)
        self.batches = Batches(cfg.device, journal, signer, clock)  # agent/uplink_batches.py
        self.telemetry = TelemetryPublisher(cfg, journal, scan, self.link, self._topic)

    def _topic(self, channel: Channel, point: str | None = None) -> str:
        return topic(self.cfg.site, self.cfg.device, channel, point)

    def on_cycle(self, report: CycleReport) -> None:
        """Called by the scan loop after each cycle (never awaits: safety does not wait for us)."""
        self.telemetry.latest[report.contract] = report
        self._wake.set()

    @property
    def _acked(self) -> int:
        return self._state.acked

    def _rewind(self, reason: Reason) -> None:
        self._state, r = resend.rewind(self._state, reason, time.monotonic())
        self._log_resend(r)

    def _log_resend(self, r: Resend) -> None:
        log.info("journal_resend from_seq=%s reason=%s device=%s", r.from_seq, r.reason.value,
                 self.cfg.device)
        self._wake.set()

    async def run(self) -> None:
        acked = await self.journal.acked_seq()
        self._state = SendState(acked=acked, sent=acked, since_s=time.monotonic())
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.link.run(self._on_message), name="mqtt-link")
                tg.create_task(self._sender(), name="journal-sender")
                tg.create_task(self.telemetry.run(), name="telemetry")
        finally:
            await self.commissioning.close()

    # -- connection ------------------------------------------------------------------------
    async def _on_connect(self) -> None:
        self.conn.set_online(True, self._clock())
        self._rewind(Reason.CONNECT)
        head, _ = await self.journal.head()
        active = self.scan.segment.active.contract if self.scan.segment else None
        running = tuple((k, s.active.contract.version) for k, s in sorted(self.scan.segments.items()))
        birth = Birth(device=self.cfg.device, site=self.cfg.site, boot_id=self.boot_id,
                      contract=active.contract if active else None,
                      version=active.version if active else None, last_seq=head,
                      contracts=running)
        await self.link.publish(self._topic(Channel.STATUS), birth.to_bytes(), retain=True)

    async def _on_disconnect(self, reason: str) -> None:
        self.conn.set_online(False, self.conn.last_contact_ms or self._clock())
        await self._save_contact(force=True)
        log.warning("uplink_offline reason=%s acked=%s", reason, self._acked)

    async def _save_contact(self, *, force: bool = False) -> None:
        """Persist the last hub contact, so a restarted agent keeps counting its offline autonomy
        budget from the real last contact (a crash-looping agent must not reset it)."""
        contact = self.conn.last_contact_ms
        if contact is None or (not force and contact - self._saved_contact < CONTACT_SAVE_MS):
            return
        await self.journal.save_checkpoint(LAST_CONTACT, str(contact).encode(), self._acked, contact)
        self._saved_contact = contact

    # -- inbound ---------------------------------------------------------------------------
    async def _on_message(self, topic_name: str, payload: bytes) -> None:
        try:
            if topic_name == self._topic(Channel.ACK):
                await self._on_ack(Ack.from_bytes(payload))
            elif topic_name == self._topic(Channel.CONTRACT):
                await self._on_contract(payload)
            elif topic_name == self._topic(Channel.CMD):
                msg = CommandMessage.from_bytes(payload)
                self.scan.command(msg.command, msg.contract)
            elif topic_name == self._topic(Channel.COMMISSION):
                self.commissioning.on_request(payload)  # answered from a task of its own
            elif topic_name == HUB_STATUS:
                self._on_hub_status(payload)
        except EncodingError as exc:
            log.warning("uplink_bad_message topic=%s error=%s", topic_name, exc)

    async def _send_commission_report(self, payload: bytes) -> None:
        await self.link.publish(self._topic(Channel.COMMISSION_REPORT), payload, qos=1)

    async def _on_ack(self, ack: Ack) -> None:
        head, _ = await self.journal.head()
        if ack.seq <= head:
            if ack.seq > self._acked:
                await self.journal.ack(ack.seq)  # durable before anything may be dropped for it
            self._state, r = resend.on_ack(self._state, ack.seq, time.monotonic())
            if r is not None:
                self._log_resend(r)
            self._wake.set()
        self.conn.last_contact_ms = self._clock()
        await self._save_contact()

    def _on_hub_status(self, payload: bytes) -> None:
        if payload == b"offline":  # the hub's last will: it resends nothing; its birth will
            log.warning("hub_offline device=%s", self.cfg.device)
            return
        birth, before = HubBirth.from_bytes(payload), self._hub
        self._hub = birth
        if before is None or (before.boot, before.ts_ms) != (birth.boot, birth.ts_ms):
            restarted = before is not None and before.boot != birth.boot
            log.info("hub_birth boot=%s restarted=%s", birth.boot[:8], restarted)
            self._rewind(Reason.HUB_RESTART if restarted else Reason.HUB_BIRTH)

    async def _on_contract(self, signed: bytes) -> None:
        digest = hashlib.sha256(signed).digest()
        if digest in self._seen_contracts:
            return  # idempotent re-delivery (QoS1 duplicates): already accepted and answered
        try:
            active = await self.store.receive(signed, self._clock())
        except ContractRefused as exc:
            cid, version = peek_identity(signed)
            result = ContractResult(contract=cid or "unknown", version=version or 1,
                                    accepted=False, refusal=exc.refusal.value, detail=exc.detail)
        else:
            self._seen_contracts.add(digest)
            self.scan.offer(active)
            c = active.contract
            result = ContractResult(contract=c.contract, version=c.version, accepted=True,
                                    refusal=None, detail=f"hash {active.hash}")
        try:
            await self.link.publish(self._topic(Channel.CONTRACT_RESULT), result.to_bytes())
        except LinkDown:
            log.warning("contract_result_unsent contract=%s", result.contract)

    # -- outbound --------------------------------------------------------------------------
    async def _sender(self) -> None:
        while True:
            raise_if_cancelled()
            await self.link.connected.wait()
            self._wake.clear()
            sent_any = await self._send_some()
            r = resend.due(self._state, time.monotonic(), self._ack_timeout_s)
            if r is not None:
                self._state, r = resend.rewind(self._state, r.reason, time.monotonic())
                self._log_resend(r)
                self._reconnect_if_deaf()
            elif not sent_any:
                await self._wait_wake(resend.wait_s(self._state, time.monotonic(),
                                                    self._ack_timeout_s))

    def _reconnect_if_deaf(self) -> None:
        """After DEAF_AFTER ack timeouts in a row, hearing nothing from the hub: a new MQTT
        session (re-subscribed; its connect rewinds to the ack again)."""
        if not resend.deaf(self._state, self._deaf_after):
            return
        log.warning("uplink_deaf timeouts=%d acked=%s sent_from=%s: forcing a reconnect",
                    self._state.timeouts, self._acked, self._acked + 1)
        self._state = resend.heard_again(self._state)
        self.link.reconnect(f"{self._deaf_after} ack timeouts in a row")

    async def _wait_wake(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _send_some(self) -> bool:
        head, _ = await self.journal.head()
        limit, s = self.cfg.batch_max, self._state
        if s.sent >= head or s.sent - s.acked >= self._window * limit:
            return False
        batch = await self.batches.next(s.sent + 1, limit)
        if batch is None:
            return False  # a hole at the very end: it is declared once an entry follows it
        payload, last_seq = batch
        try:
            await self.link.publish(self._topic(Channel.JOURNAL), payload)
        except LinkDown:
            return False
        self._state = resend.on_sent(self._state, last_seq, s.epoch, time.monotonic())
        return True
