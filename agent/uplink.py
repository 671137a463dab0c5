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
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable

from agent.commission_answer import CommissionResponder
from agent.config import AgentConfig
from agent.contract_store import ContractStore
from agent import batching, resend
from agent.journal_signing import JournalSigner
from agent.journal_thread import AsyncJournal
from agent.resend import Reason, Resend, SendState
from agent.scan import Connectivity, CycleReport, ScanLoop
from contracts.chain_rows import Row
from contracts.errors import ContractRefused, EncodingError
from contracts.journal_events import AgentEvent, agent_event_body, item
from contracts.signing import peek_identity
from contracts.topics import HUB_STATUS, Channel, topic
from contracts.types import Value
from contracts.journal_wire import JournalRows
from contracts.wire import Ack, Birth, CommandMessage, ContractResult, HubBirth, Telemetry
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

MAX_HOLES_REMEMBERED = 10_000
"""Holes already journaled (and unreadable rows noted) kept in memory; past this the sets are
cleared — memory stays bounded, and a hole may then be journaled once more."""

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
        self._latest: dict[str | None, CycleReport] = {}  # by contract id: one telemetry each
        self._published_points: dict[str, object] = {}
        self._seen_contracts: set[bytes] = set()
        self._saved_contact = 0
        self._hub: HubBirth | None = None  # the last hub birth seen
        self._unreadable: dict[int, str] = {}  # seq -> why its row cannot be sent
        self._holes_told: set[tuple[int, int]] = set()
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

    def _topic(self, channel: Channel, point: str | None = None) -> str:
        return topic(self.cfg.site, self.cfg.device, channel, point)

    def on_cycle(self, report: CycleReport) -> None:
        """Called by the scan loop after each cycle (never awaits: safety does not wait for us)."""
        self._latest[report.contract] = report
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
                tg.create_task(self._telemetry(), name="telemetry")
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
        entries = await self._read_from(max(s.sent + 1, await self.journal.low_water()), limit)
        if not entries:
            return False  # a hole at the very end: it is declared once an entry follows it
        payload = await self._encode(s.sent + 1, entries)
        try:
            await self.link.publish(self._topic(Channel.JOURNAL), payload)
        except LinkDown:
            return False
        self._state = resend.on_sent(self._state, entries[-1].seq, s.epoch, time.monotonic())
        return True

    async def _read_from(self, start: int, limit: int) -> list[Row]:
        """Up to `limit` stored rows from `start`; rows that are not entries are noted and read
        past."""
        while True:
            entries, bad = await self.journal.read_rows(start, limit)
            self._unreadable.update(bad)
            if entries or not bad:
                return entries
            start = bad[-1][0] + 1

    async def _encode(self, from_seq: int, entries: list[Row]) -> bytes:
        try:
            batch = await self._signed(batching.build(self.cfg.device, from_seq, entries))
            payload = batch.to_bytes()
        except Exception as exc:  # noqa: BLE001 - our own data must never crash-loop the uplink
            log.error("journal_batch_unbuildable from_seq=%s error=%s", from_seq, exc)
            entries, bad = batching.encodable(self.cfg.device, entries)
            self._unreadable.update(bad)
            if not entries:
                raise
            batch = await self._signed(batching.build(self.cfg.device, from_seq, entries))
            payload = batch.to_bytes()
        await self._journal_holes(batch.gaps)
        return payload

    async def _signed(self, batch: JournalRows) -> JournalRows:
        """The batch signed by the agent's journal key (agent/journal_signing.py), if it has one."""
        return batch if self.signer is None else await self.signer.sign_async(self.journal, batch)

    async def _journal_holes(self, gaps: tuple[tuple[int, int], ...]) -> None:
        """Each hole is journaled once per uplink (the batch declaring it is resent freely)."""
        for first, last in gaps:
            if (first, last) in self._holes_told:
                continue
            why = self._unreadable.get(first, "rows missing from the journal")
            log.error("journal_hole from_seq=%s to_seq=%s reason=%s", first, last, why)
            await self.journal.append(*item(agent_event_body(
                AgentEvent.JOURNAL_HOLE, from_seq=first, to_seq=last, reason=why), self._clock()))
            self._holes_told.add((first, last))
        if len(self._holes_told) + len(self._unreadable) > MAX_HOLES_REMEMBERED:
            self._holes_told.clear()
            self._unreadable.clear()

    async def _telemetry(self) -> None:
        while True:
            raise_if_cancelled()
            await asyncio.sleep(self.cfg.telemetry_s)
            if not self.link.connected.is_set():
                continue
            running = self.scan.segments
            for key, report in sorted(self._latest.items(), key=lambda kv: str(kv[0])):
                if key not in running:
                    del self._latest[key]  # a retired contract reports no more
                    continue
                try:
                    await self._publish_telemetry(report)
                except LinkDown:
                    break

    async def _publish_telemetry(self, report: CycleReport) -> None:
        """Telemetry and the retained `points/{name}` documents carry the device's truth: the
        last good read of every point (inputs and the read-back of write points) with its time,
        never the engine's belief; the engine's outputs go beside it as `commanded`."""
        seg = self.scan.segments.get(report.contract) if report.contract else self.scan.segment
        state = report.result.state
        truth: dict[str, tuple[Value, int]] = dict(seg.last_good) if seg else {}
        commanded = dict(state.outputs)
        safe = seg.actuator.safe_view() if seg else None
        trip = (seg.trip_cause if seg else None) or (state.trip.value if state.trip else None)
        c = seg.active.contract if seg else None
        msg = Telemetry(ts_ms=report.now_ms, values=tuple(sorted((n, v) for n, (v, _) in truth.items())),
                        mode=state.mode.value, step=seg.step_name() if seg else None,
                        seq=(await self.journal.head())[0], contract=c.contract if c else None,
                        version=c.version if c else None, state=state.to_mapping(),
                        commanded=tuple(sorted(commanded.items())),
                        read_ms=tuple(sorted((n, ts) for n, (_, ts) in truth.items())),
                        safe=safe.state if safe else None, trip=trip if state.trip else None,
                        faults=seg.telemetry_faults() if seg else ())
        await self.link.publish(self._topic(Channel.TELEMETRY), msg.to_bytes(), qos=0)
        for name, (value, read_ms) in sorted(truth.items()):
            doc: dict[str, object] = {"value": value, "ts_ms": read_ms, "device": self.cfg.device}
            if seg and name in commanded and not seg.actuator.device_shows(name, commanded[name], value):
                doc["commanded"] = commanded[name]
            key = (value, doc.get("commanded"))
            if self._published_points.get(name, object()) != key:
                self._published_points[name] = key
                await self.link.publish(self._topic(Channel.POINTS, name), json.dumps(doc).encode(),
                                        qos=0, retain=True)
