"""The hub's MQTT side: registry, device state machine, journal ingestion with acks, projection.

Theory of operation. One MqttLink (hub credentials) subscribes to every device's status, journal,
contract results and telemetry. Per message:
  status     retained birth → register/refresh the device, BIRTH; "offline" (last will) → WILL and
             start a projection. At birth the hub re-pushes the contract it expects the device to
             run if the device reports another (QoS is not trusted for delivery).
  journal    ingest idempotently (hub/ingest.py), store, then ack the highest contiguous seq —
             the ack is published only after the entries are committed (durable before acked).
             A broken chain is an alarm and moves the device to FAULT; nothing after it is stored.
  telemetry  live values (kept in memory, flushed to the store every FLUSH_S), TELEMETRY.
  contract/result  ACCEPT/REFUSE the contract version; a refusal goes to the planner (config).
Before any of that, a message's claims are checked against its topic's identity and the hub's
records (hub/claims.py: registered device, contracts issued to it, signed journal batches); a
refused message changes nothing and is logged and alarmed (bounded: once a minute per refusal).
Background: silence → SILENCE (projected); journal caught up → reconcile (hub/offline.py) →
RECONCILE_DONE → live. Every transition goes through the store's state tables (invariant 7).

Restarts (issue 8). At start every device the hub showed live or was catching up takes HUB_RESTART
(→ reconciling): nothing in memory survived, the values shown are stale. On every connect of its
link — after the link has re-subscribed — the hub re-publishes each known device's ack, then its
retained birth `fp/v1/_hub/status` (HubBirth, a new boot id per process; last will `offline`).
Its subscriptions are never assumed: the link's probe on `fp/v1/_hub/probe` must echo, or the
link reconnects.
Agents resend from the ack on it. A device in `reconciling` is caught up only once it has spoken
since (a fresh birth, telemetry or a journal batch) and the hub holds everything up to the head it
reported then; a retained birth replayed by the broker (identical to the stored one) is not news.

Batches (keeping up with 1,000 devices at 1 Hz): the link only queues messages (bounded inbox,
so a slow store pushes back on the broker's TCP stream); a worker takes every message waiting, up
to MAX_BATCH, handles them in one store batch and commits once. Acks are held until that commit
and then published together; anything else that leaves the hub (a contract push, a command)
commits the batch first (`commit_now`, the publisher's hook). A store error fails the whole batch:
it is rolled back, nothing in it is acked, the in-memory cursors are reloaded from the store (the
agents resend from their last ack), and it is logged and counted (`write_errors`), not swallowed.
Run in its own thread with its own event loop and store connection (hub/app.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from contracts.chain import Entry, EntryKind, encode_body
from contracts.errors import EncodingError
from contracts.inputs import Command
from contracts.journal_events import AgentEvent
from contracts.schema import Contract
from contracts.schema_parse import parse_contract
from contracts.topics import HUB_PROBE, HUB_STATUS, Channel, TopicParts, hub_filters, parse, topic
from contracts.wire import (Ack, Birth, CommandMessage, ContractResult, HubBirth, JournalBatch,
                            Telemetry)
from contracts.types import EpochMs
from transport.mqtt import LinkDown, MqttLink, Probe, Will
from hub.alarms import AlarmKind, detail_of, journal_alarm, telemetry_changes
from hub.commissioning import take_reply
from hub.audit import AuditAction, AuditEntry, Outcome, log_entry
from hub.claims import (
    UNKNOWN_DEVICE, Verdict, batch_claim, birth_claim, contract_claim, may_change_contracts, quote,
)
from hub.config import FailureCategory
from hub.lineage import inputs_healthy
from hub.trips import echoed_refusals, is_echo, latches, live_entry, resume_refusal, trip_cause
from hub.views import LIVE_FIELDS
from hub.ingest import Cursor, DeviceIngest, Gap, PendingBudget
from hub.offline import OfflineManager, current_point
from hub.registry import DeviceRegistry
from hub.states import ContractEvent, ContractStatus, DeviceEvent, DeviceState, IllegalTransition
from hub.store import (ContractRecord, DeviceRecord, Duplicate, HubStore, JournalRow, NotFound,
                       StoreError, contract_id)
from transport.cancel import raise_if_cancelled

log = logging.getLogger("fieldpact.hub.sync")

FLUSH_S = 2.0
"""Live values are flushed to SQLite in one transaction every 2 s: 1,000 devices at 1 Hz would
otherwise cost 1,000 fsyncs a second."""

TICK_S = 1.0

MAX_BATCH = 64
"""Messages taken from the inbox per round; telemetry (no rows) makes up most rounds."""

MAX_BATCH_ENTRIES = 5_000
"""Journal entries per commit at most: ~10 agent batches, tens of ms of work, so under a backlog
acks still flow steadily (an agent resends when its ack stalls; bench/sync.py after 2 s)."""

INBOX = 256
"""Messages queued between the link and the worker; when full, the link waits (backpressure)."""
CLAIM_REPEAT_MS = 60_000
"""A refused claim repeated by the same device (its telemetry, every second) is logged and alarmed
again at most once a minute: every alarm is a durable write, and the first one says it all."""
MAX_REFUSALS_TRACKED = 4096

PROBE_S = 2.0
"""The hub proves its subscriptions every 2 s, so a broker that silently forgot them is found
within 6 s (MqttLink PROBE_MISSES): inside the 10 s convergence target, for 0.5 msg/s."""

_OFFLINE = b"offline"


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


CROSS_THREAD_TIMEOUT_S = 10.0
"""Bound on a publish handed to the MQTT side's loop from another one (the API's): the link's own
confirmation wait (5 s) plus time for a busy loop to pick the call up."""


class MqttPublisher:
    """hub.service.Publisher over the hub's MqttLink, usable from any event loop: on the link's
    own loop it publishes directly; from another loop (the API's thread) it hands the publish to
    the link's loop and waits at most CROSS_THREAD_TIMEOUT_S. Raises LinkDown when the MQTT side
    is not running, does not answer in time, or the broker does not confirm. `before_publish`
    (the sync side's commit) runs on the link's loop first, so nothing leaves the hub before what
    it depends on is committed."""

    def __init__(self, link: MqttLink | None = None, *,
                 loop: asyncio.AbstractEventLoop | None = None,
                 before_publish: Callable[[], None] | None = None) -> None:
        self._target = (link, loop)  # one attribute: replaced whole, read whole, from any thread
        self._why, self.before_publish = "not running", before_publish

    @property
    def link(self) -> MqttLink | None:
        return self._target[0]

    def attach(self, link: MqttLink | None, loop: asyncio.AbstractEventLoop | None = None,
               why: str = "not running") -> None:
        """Point at the MQTT side's link and loop; with None, every publish raises LinkDown
        saying `why`."""
        self._target, self._why = (link, loop), why

    async def push_contract(self, site: str, device: str, signed: bytes) -> None:
        await self._publish(topic(site, device, Channel.CONTRACT), signed)

    async def send_command(self, site: str, device: str, command: Command) -> None:
        await self._publish(topic(site, device, Channel.CMD),
                            CommandMessage(command=command).to_bytes())

    async def request_commissioning(self, site: str, device: str, payload: bytes) -> None:
        await self._publish(topic(site, device, Channel.COMMISSION), payload)

    async def _publish(self, name: str, payload: bytes) -> None:
        link, loop = self._target
        if link is None:
            raise LinkDown(f"the hub's MQTT side is {self._why}")
        if loop is None or loop is asyncio.get_running_loop():
            await self._here(link, name, payload)
            return
        coro = self._here(link, name, payload)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError as exc:  # that loop is closed: the MQTT side stopped
            coro.close()
            raise LinkDown(f"publish {name}: the hub's MQTT side is not running") from exc
        try:
            async with asyncio.timeout(CROSS_THREAD_TIMEOUT_S):
                await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            raise LinkDown(f"publish {name}: the hub's MQTT side did not answer within "
                           f"{CROSS_THREAD_TIMEOUT_S:g} s") from None

    async def _here(self, link: MqttLink, name: str, payload: bytes) -> None:
        if self.before_publish is not None:
            self.before_publish()
        await link.publish(name, payload, qos=1)


class HubSync:
    def __init__(self, store: HubStore, offline: OfflineManager, link: MqttLink, *,
                 silence_timeout_ms: int, clock: Callable[[], EpochMs] = wall_ms,
                 registry: DeviceRegistry | None = None) -> None:
        self.store, self.offline, self.link = store, offline, link
        self.silence_timeout_ms, self.clock = silence_timeout_ms, clock
        self.live: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        self._ingest: dict[str, DeviceIngest] = {}
        # Catch-up target per device in `reconciling`: the head it reported since it entered;
        # absent = it has not spoken since (then it is not caught up, whatever the cursor says).
        self._target: dict[str, int] = {}
        self._snapshotted: set[str] = set()  # telemetry head already taken into the target
        self._advanced_ms: dict[str, EpochMs] = {}  # when each device's cursor last moved
        self.boot_id = uuid.uuid4().hex
        link.will = Will(topic=HUB_STATUS, payload=_OFFLINE, qos=1, retain=True)
        link.on_connect = self._on_link_up
        link.probe = Probe(topic=HUB_PROBE, every_s=PROBE_S)
        self.entries_ingested = 0
        self._started: set[str] = set()  # contract ids already moved to ACTIVE by telemetry
        self._healthy_since: dict[str, EpochMs] = {}
        self._journal_cid: dict[str, str | None] = {}
        """device -> contract id of its latest BOOT entry; None when that contract was not issued
        to the device (its entries then change no contract)."""
        self._contracts: dict[str, Contract] = {}  # parsed once: telemetry checks them each second
        offline.healthy_since = self._healthy_since.get
        offline.service.live = self.live  # the API shows these, fresher than the flushed copy
        self._lock = asyncio.Lock()
        self._inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(INBOX)
        self._acks: dict[tuple[str, str], int] = {}  # (site, device) -> seq, sent after commit
        self._acks_ready: dict[tuple[str, str], int] = {}  # committed, not yet published
        self._uncommitted = 0  # journal entries in the open batch
        self._touched: set[str] = set()  # devices whose messages the open batch holds
        self.write_errors = 0
        self.last_write_error: str | None = None
        self.registry = registry or offline.service.registry  # one per hub, shared with the API
        self._pending_budget = PendingBudget()
        self._refusals: dict[tuple[str, str | None, str], int] = {}  # see _refused
        self._unsigned_seen: set[str] = set()  # see _unsigned

    @staticmethod
    def subscriptions() -> list[tuple[str, int]]:
        return [(f, 1) for f in hub_filters()]

    async def run(self) -> None:
        self.announce_restart()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.link.run(self._enqueue), name="hub-mqtt")
            tg.create_task(self._worker(), name="hub-sync-worker")
            tg.create_task(self._ticker(), name="hub-sync-ticker")

    # -- restarts -------------------------------------------------------------------------
    def announce_restart(self) -> None:
        """This process is a new hub: every device shown live or being caught up takes
        HUB_RESTART (interface 7). Called by `run()` before the link starts."""
        for d in self.store.devices.find():
            self._event(d.id, DeviceEvent.HUB_RESTART, f"hub boot {self.boot_id[:8]}")

    async def _on_link_up(self) -> None:
        """Subscribed again (MqttLink subscribes before calling this): acks first, so an agent
        rewinds to the hub's real cursor when the birth arrives, then the birth."""
        with contextlib.suppress(StoreError):  # re-acked from the store: commit what it holds
            self.commit_now()
        for d in self.store.devices.find():  # LinkDown ends this session; the next connect redoes it
            if d.acked_seq > 0:
                await self.link.publish(topic(d.site, d.id, Channel.ACK),
                                        Ack(seq=d.acked_seq).to_bytes())
        birth = HubBirth(boot=self.boot_id, ts_ms=self.clock())
        await self.link.publish(HUB_STATUS, birth.to_bytes(), qos=1, retain=True)
        log.info("hub_birth boot=%s devices_acked=%d", self.boot_id, len(self.store.devices.find()))

    def _heard(self, device: str, head: int) -> None:
        """The device spoke since it entered `reconciling`, reporting journal head `head`."""
        self._target[device] = max(self._target.get(device, 0), head)

    # -- batches --------------------------------------------------------------------------
    async def _enqueue(self, topic_name: str, payload: bytes) -> None:
        await self._inbox.put((topic_name, payload))

    async def _worker(self) -> None:
        """Every message waiting (up to MAX_BATCH) in one store batch, then commit and ack."""
        while True:
            raise_if_cancelled()
            batch = [await self._inbox.get()]
            while len(batch) < MAX_BATCH and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            for topic_name, payload in batch:
                self._begin()
                await self.on_message(topic_name, payload)
                if self._uncommitted >= MAX_BATCH_ENTRIES:
                    await self.commit()
            await self.commit()

    def _begin(self) -> None:
        """Open a batch; if the store cannot (locked past its busy timeout, failing), say so and
        go on without one: each write then commits alone or fails on its own."""
        try:
            self.store.begin_batch()
        except sqlite3.Error as exc:
            self._batch_failed(exc)

    async def commit(self) -> None:
        """Commit the open batch, then publish the acks it held (durable before acked)."""
        try:
            self.commit_now()
        except StoreError:
            return  # logged and counted by _batch_failed; the agents resend from their ack
        acks, self._acks_ready = self._acks_ready, {}
        await asyncio.gather(*(self._publish_ack(site, device, seq)
                               for (site, device), seq in acks.items()))

    def commit_now(self) -> None:
        """Commit the open batch (the publisher's hook: before a push or command goes out).
        Raises StoreError after handling the failure (_batch_failed)."""
        try:
            self.store.commit_batch()
        except StoreError as exc:
            self._batch_failed(exc)
            raise
        self._acks_ready.update(self._acks)  # committed: commit() publishes them
        self._acks.clear()
        self._uncommitted = 0
        self._touched.clear()

    def _batch_failed(self, exc: Exception) -> None:
        """A store write failed: undo the batch and forget what it held in memory."""
        self.store.rollback_batch()
        devices = sorted(self._touched | {device for _, device in self._acks})
        self._acks.clear()
        self._touched.clear()
        self._uncommitted = 0
        self._ingest.clear()  # cursors reload from the store: the committed acked_seq
        self.offline.forget_folds()
        self._started.clear()
        self.write_errors += 1
        self.last_write_error = f"{type(exc).__name__}: {exc}"[:300]
        log.error("hub_store_write_failed error=%r unacked_devices=%d", self.last_write_error,
                  len(devices))
        for device in [d for d in devices if self._known(d)][:10]:  # bounded; the log counts all
            try:
                self._alarm(device, "hub_error", f"store write failed, batch not acked: "
                                                 f"{self.last_write_error}"[:300])
            except (sqlite3.Error, StoreError):
                log.error("hub_alarm_failed device=%s kind=hub_error", device)

    # -- dispatch -------------------------------------------------------------------------
    async def on_message(self, topic_name: str, payload: bytes) -> None:
        try:
            parts = parse(topic_name)
        except ValueError:
            return
        handler = {Channel.STATUS: self._on_status, Channel.JOURNAL: self._on_journal,
                   Channel.TELEMETRY: self._on_telemetry,
                   Channel.CONTRACT_RESULT: self._on_result,
                   Channel.COMMISSION_REPORT: self._on_commission_report}.get(parts.channel)
        if handler is None:
            return
        if self.store.in_batch:
            self._touched.add(parts.device)
        try:
            async with self._lock:
                await handler(parts, payload)
        except (sqlite3.Error, StoreError) as exc:
            if isinstance(exc, NotFound | Duplicate):
                log.warning("hub_bad_message topic=%s error=%s", topic_name, exc)
            else:
                self._batch_failed(exc)
        except (EncodingError, ValueError) as exc:
            log.warning("hub_bad_message topic=%s error=%s", topic_name, exc)
        except Exception as exc:  # one device's message must never stop the hub's MQTT side
            log.exception("hub_handler_failed topic=%s", topic_name)
            if self._known(parts.device):
                self._alarm(parts.device, AlarmKind.HUB_ERROR, f"{type(exc).__name__}: {exc}"[:300])
        # A burst of queued messages is otherwise handled without ever suspending (queue gets
        # return at once), starving the API that shares this event loop.
        await asyncio.sleep(0)
        raise_if_cancelled()

    def _event(self, device: str, event: DeviceEvent, reason: str | None = None) -> DeviceState:
        try:
            changed = self.store.devices.apply_event(device, event, self.clock(), reason)
        except IllegalTransition as exc:
            log.warning("device_event_ignored device=%s %s", device, exc)
            return self.store.devices.get(device).state
        if changed.written:
            log.info("device_state device=%s %s -> %s event=%s", device, changed.before,
                     changed.after, event.value)
            self._on_transition(device, DeviceState(changed.before), DeviceState(changed.after))
        return DeviceState(changed.after)

    def _on_transition(self, device: str, before: DeviceState, after: DeviceState) -> None:
        if after is DeviceState.RECONCILING and before is not DeviceState.RECONCILING:
            self._target.pop(device, None)
            self._snapshotted.discard(device)
        if after is DeviceState.PROJECTED:
            rec = self.store.devices.get(device)
            blob = self.offline.start_projection(rec, self.live.get(device), self._cursor(rec).seq)
            if blob is not None:
                self._store_projection(device, blob)

    # -- status ---------------------------------------------------------------------------
    async def _on_status(self, parts: TopicParts, payload: bytes) -> None:
        device = parts.device
        if payload == _OFFLINE:
            if self._known(device):
                self._event(device, DeviceEvent.WILL, "last will")
            return
        birth = Birth.from_bytes(payload)
        if self._refused(parts, self.registry.admits(parts.site, device)) or self._refused(
                parts, birth_claim(parts.site, device, birth)):
            return  # only registered devices exist; a refused birth changes nothing
        if self._replayed(device, birth):
            return  # the broker's retained copy of a birth we already handled: not news
        # A contract the hub did not issue to this device (a local file, or another device's)
        # is alarmed and not recorded; the birth itself still says the device is up.
        trusted = not self._refused(parts, self._claim(device, birth.contract, birth.version))
        labels = self.registry.labels(device, birth.labels)
        self.store.devices.ensure(device, parts.site, self.clock(), labels)
        self.store.devices.update(device, boot_id=birth.boot_id,
                                 contract=birth.contract if trusted else None,
                                 version=birth.version if trusted else None,
                                 last_seq=birth.last_seq,
                                 last_seen_ms=self.clock(), labels=labels)
        self._event(device, DeviceEvent.BIRTH, f"boot {birth.boot_id[:8]}")
        self._heard(device, birth.last_seq)
        await self._repush_if_needed(self.store.devices.get(device))
        await self._maybe_caught_up(device)

    def _replayed(self, device: str, birth: Birth) -> bool:
        """The broker's retained copy of the birth already handled (it is delivered again each
        time the hub subscribes). After the device's last will the retained status is `offline`,
        so an identical birth seen by a device taken offline is a new one."""
        if not self._known(device):
            return False
        rec = self.store.devices.get(device)
        offline = rec.state in (DeviceState.PROJECTED, DeviceState.UNKNOWN)
        return not offline and (rec.boot_id, rec.last_seq) == (birth.boot_id, birth.last_seq)

    def _known(self, device: str) -> bool:
        if self.registry.get(device) is None:
            return False
        try:
            self.store.devices.get(device)
        except NotFound:
            return False
        return True

    # -- claims (hub/claims.py decides; these only look up what the hub knows) -------------
    def _admitted(self, parts: TopicParts) -> bool:
        """A registered device of that site (else refused and alarmed) that has been born."""
        refused = self._refused(parts, self.registry.admits(parts.site, parts.device))
        return not refused and self._known(parts.device)

    def _unsigned(self, device: str) -> None:
        """An unsigned batch from a device with no enrolled key passed (require_signed_journals
        is off): accepted, but never silently — one alarm per device until a key is enrolled."""
        if device not in self._unsigned_seen:
            self._unsigned_seen.add(device)
            self._alarm(device, AlarmKind.UNSIGNED_JOURNAL,
                        "journal batches are unsigned and no journal key is enrolled: enroll the "
                        "agent's key (fieldpact agent pubkey) or set require_signed_journals")

    def _refused(self, parts: TopicParts, verdict: Verdict) -> bool:
        """Log and alarm a refused message; True if it was refused (it then changes nothing).
        The same refusal repeated (telemetry every second) is logged and alarmed once a minute."""
        if verdict.ok:
            return False
        key, now = (parts.device, verdict.alarm, verdict.detail), self.clock()
        if now - self._refusals.get(key, -CLAIM_REPEAT_MS) < CLAIM_REPEAT_MS:
            return True
        if len(self._refusals) >= MAX_REFUSALS_TRACKED:
            self._refusals.clear()
        self._refusals[key] = now
        log.warning("claim_refused device=%s channel=%s alarm=%s detail=%s", quote(parts.device),
                    parts.channel.value, verdict.alarm, quote(verdict.detail, 300))
        if verdict.alarm is not None and (verdict.alarm != UNKNOWN_DEVICE
                                          or self.registry.first_sight(parts.device)):
            self._alarm(parts.device, verdict.alarm, verdict.detail)
        return True

    def _record(self, cid: str) -> ContractRecord | None:
        try:
            return self.store.contracts.get(cid)
        except NotFound:
            return None

    def _claim(self, device: str, contract: str | None, version: int | None) -> Verdict:
        if not contract or not version:
            return Verdict(ok=True)
        cid = contract_id(contract, version)
        return contract_claim(device, cid, self._record(cid))

    async def _repush_if_needed(self, device: DeviceRecord) -> None:
        expected = [r for r in self.store.contracts.find(device=device.id)
                    if r.status in (ContractStatus.PUSHED, ContractStatus.SUBMITTED)]
        for r in expected:
            if (device.contract, device.version) != (r.contract, r.version):
                try:
                    await self.offline.service.publisher.push_contract(r.site, r.device, r.signed)
                    log.info("contract_repushed contract=%s device=%s", r.id, r.device)
                except LinkDown:
                    pass

    # -- journal --------------------------------------------------------------------------
    def _cursor(self, device: DeviceRecord) -> Cursor:
        ing = self._ingest.get(device.id)
        if ing is not None:
            return ing.cursor
        if device.acked_seq and device.last_hash:
            return Cursor(seq=device.acked_seq, hash=device.last_hash)
        return Cursor()

    async def _on_journal(self, parts: TopicParts, payload: bytes) -> None:
        batch = JournalBatch.from_bytes(payload)
        device = parts.device
        if not self._admitted(parts):
            return
        if self._refused(parts, batch_claim(device, batch, self.registry.journal_key(device),
                                            require_signed=self.registry.require_signed_journals)):
            return  # nothing stored, no ack: a genuine agent resends from the last ack
        if batch.sig is None:
            self._unsigned(device)
        rec = self.store.devices.get(device)
        ing = self._ingest.setdefault(device, DeviceIngest(self._cursor(rec),
                                                           budget=self._pending_budget))
        result = ing.add([Entry.from_mapping(m) for m in batch.entries], batch.dropped_through,
                         batch.gaps, nbytes=len(payload))
        if result.store:
            self.store.journal.insert_entries(device, result.store, result.bodies)
            self._uncommitted += len(result.store)
            self.offline.fold(device, result.store)
        if result.gaps:
            self.store.journal.insert([_gap_row(device, g) for g in result.gaps])
        if result.store or result.gaps:
            self.entries_ingested += len(result.store)
        if result.cursor.seq > rec.acked_seq:
            self._advanced_ms[device] = self.clock()
        self.store.devices.update(device, acked_seq=result.cursor.seq, last_hash=result.cursor.hash,
                                 last_seen_ms=self.clock())
        self._heard(device, batch.to_seq)
        for g in result.gaps:
            self._alarm(device, "journal_gap", f"seq {g.from_seq}..{g.to_seq} will never reach "
                        f"the hub: {g.reason}; sync continues after it")
        if result.broken is not None:
            self._alarm(device, AlarmKind.CHAIN_BREAK, f"seq {result.broken.seq}: {result.broken.reason}")
            self._event(device, DeviceEvent.CHAIN_BROKEN, result.broken.reason)
        await self._contract_events(device, result.store)
        await self._ack(parts, result.cursor.seq)
        await self._maybe_caught_up(device)

    async def _ack(self, parts: TopicParts, seq: int) -> None:
        if seq <= 0:
            return
        if self.store.in_batch:  # held until the batch commits (durable before acked)
            self._acks[(parts.site, parts.device)] = seq
            return
        await self._publish_ack(parts.site, parts.device, seq)

    async def _publish_ack(self, site: str, device: str, seq: int) -> None:
        try:
            await self.link.publish(topic(site, device, Channel.ACK), Ack(seq=seq).to_bytes())
        except LinkDown:
            pass  # the agent resends from its last ack; the next batch acks again

    def _alarm(self, device: str, kind: str, detail: str) -> None:
        self.store.alarms.raise_(device, kind, detail, self.clock())
        log.error("alarm device=%s kind=%s detail=%s", device, kind, quote(detail))

    async def _maybe_caught_up(self, device: str) -> None:
        rec = self.store.devices.get(device)
        if rec.state is not DeviceState.RECONCILING:
            return
        target = self._target.get(device)
        if target is None or self._cursor(rec).seq < target:
            return
        if self._event(device, DeviceEvent.JOURNAL_CAUGHT_UP) is DeviceState.RECONCILED:
            report = await self.offline.reconcile_device(self.store.devices.get(device))
            if report is not None:
                self.store.devices.update(device, drift=report.report, projection=None)
            why = f"reconciliation {report.id}" if report else "no outage to reconcile"
            self._event(device, DeviceEvent.RECONCILE_DONE, why)

    async def _contract_events(self, device: str, entries: list[Entry]) -> None:
        """Contract outcomes and alarms seen in a device's journal, in seq order. Alarms and
        contract transitions are facts whatever the device state; the planner is asked only for
        a live device (after an outage the reconciliation judges the same entries instead, so
        they are not handled twice). A failed contract is `runtime`; a trip is `trip`, whose
        default policy holds the latch (hub/config.py)."""
        state = self.store.devices.get(device).state
        if not may_change_contracts(state).ok:
            return  # a device in FAULT changes no contract state
        echoed = echoed_refusals(entries)
        for e in entries:
            if is_echo(e, echoed):
                continue
            event = e.body.get("event")
            if e.kind.value == "boot" and e.body.get("contract") and e.body.get("version"):
                self._boot_contract(device, str(e.body["contract"]), int(e.body["version"]))
            self._journal_alarms(device, e)
            if event in ("completed", "failed") and e.kind.value == "step":
                failed = self._finish_contract(device, event)
                if failed is not None and state is DeviceState.LIVE:
                    await self._plan(failed, FailureCategory.RUNTIME,
                                     f"contract failed: {e.body.get('reason') or e.body.get('step')}")
            elif latches(e):
                await self._on_trip(device, e, plan=state is DeviceState.LIVE)
            elif event == AgentEvent.MODEL_DIVERGENCE and state is DeviceState.LIVE:
                await self._on_model_divergence(device, e)
            elif event == "resumed":
                self._on_resumed(device, e)
            elif resume_refusal(e):
                self._on_resume_refused(device, e)

    def _journal_alarms(self, device: str, e: Entry) -> None:
        raise_kind, clear = journal_alarm(e.body)
        for kind in clear:
            if self.store.alarms.clear_kind(device, kind, self.clock()):
                log.info("alarm_cleared device=%s kind=%s by=%s", device, kind, e.body.get("event"))
        if raise_kind is not None:
            self._alarm(device, raise_kind, f"seq {e.seq}: {detail_of(str(e.body.get('event')), e.body)}")

    async def _on_trip(self, device: str, e: Entry, *, plan: bool) -> None:
        cid = self._current_cid(device)
        self._healthy_since.pop(device, None)  # settle time counts from after the trip
        if cid is None:
            return
        cause = trip_cause(e.body)
        self._contract_event(cid, ContractEvent.TRIP, f"trip: {cause}")
        if plan:
            await self._plan(cid, FailureCategory.TRIP, f"guard trip: {cause}")

    async def _on_model_divergence(self, device: str, e: Entry) -> None:
        """The process does not follow the contract's model: the `model` policy decides
        (default hold); the alarm was raised from the same entry (hub/alarms.py)."""
        cid = self._current_cid(device)
        if cid is not None:
            await self._plan(cid, FailureCategory.MODEL,
                             f"model_divergence: {detail_of(AgentEvent.MODEL_DIVERGENCE, e.body)}")

    def _on_resumed(self, device: str, e: Entry) -> None:
        cid = self._current_cid(device)
        if cid is None:
            return
        if self._contract_event(cid, ContractEvent.RESUME, f"journal: resumed ({e.body.get('reason')})"):
            self._audit_agent(cid, device, Outcome.OK, "the agent resumed the contract",
                              command=e.body.get("command"), seq=e.seq)

    def _on_resume_refused(self, device: str, e: Entry) -> None:
        cid = self._current_cid(device)
        cause = quote(e.body.get("cause") or e.body.get("reason"))
        self._audit_agent(cid, device, Outcome.REFUSED, f"the agent refused the resume: {cause}",
                          command=e.body.get("command"), cause=cause, seq=e.seq)

    def _audit_agent(self, cid: str | None, device: str, outcome: Outcome, reason: str,
                     **detail: Any) -> None:
        entry = AuditEntry(ts_ms=self.clock(), actor=f"agent:{device}", action=AuditAction.RESUME,
                           outcome=outcome, device=device, contract=cid, reason=reason,
                           detail=detail)
        self.store.audit.add(entry)
        log_entry(entry)

    def _boot_contract(self, device: str, contract: str, version: int) -> None:
        """A BOOT entry names the contract that follows; kept only if the hub issued it to this
        device (else the device's later entries change no contract: claim_mismatch)."""
        if self._claim(device, contract, version).ok:
            self._journal_cid[device] = contract_id(contract, version)
        else:
            self._journal_cid[device] = None
            self._alarm(device, "claim_mismatch",
                        f"journal BOOT names {quote(contract)}@{version}, not issued to {device}")

    def _current_cid(self, device: str) -> str | None:
        """The contract the device runs, if the hub issued it to this device: the one its
        journal's latest BOOT entry names (the entries being handled belong to it; only a claim
        that passed is kept there), else what its birth/telemetry reported."""
        if device in self._journal_cid:
            return self._journal_cid[device]
        rec = self.store.devices.get(device)
        if not self._claim(device, rec.contract, rec.version).ok:
            return None
        return contract_id(rec.contract, rec.version) if rec.contract and rec.version else None

    def _finish_contract(self, device: str, event: str) -> str | None:
        """Move the device's contract to COMPLETED/FAILED; the contract id if it failed."""
        cid = self._current_cid(device)
        if cid is None:
            return None
        ev = ContractEvent.COMPLETE if event == "completed" else ContractEvent.FAIL
        written = self._contract_event(cid, ev, f"journal: {event}")
        return cid if written and ev is ContractEvent.FAIL else None

    async def _plan(self, cid: str, category: FailureCategory, reason: str) -> None:
        try:
            record = self.store.contracts.get(cid)
        except NotFound:  # a contract the hub never issued (the agent's initial file)
            log.warning("plan_skipped contract=%s reason=unknown to the hub", cid)
            return
        steps = [s.name for s in parse_contract(record.document).steps]
        live = self.live.get(record.device, {})
        step = steps.index(live["step"]) if live.get("step") in steps else None
        await self.offline.apply_policy(parse_contract(record.document), record, category,
                                        reason, step)

    def _contract_event(self, cid: str, event: ContractEvent, reason: str) -> bool:
        try:
            return self.store.contracts.apply_event(cid, event, self.clock(), reason).written
        except (IllegalTransition, NotFound) as exc:
            log.info("contract_event_ignored contract=%s event=%s why=%s", cid, event.value, exc)
            return False

    # -- telemetry and results ------------------------------------------------------------
    async def _on_telemetry(self, parts: TopicParts, payload: bytes) -> None:
        t = Telemetry.from_bytes(payload)
        device = parts.device
        if not self._admitted(parts):
            return  # a device appears on its birth, never on telemetry alone
        rec = self.store.devices.get(device)
        fault = not may_change_contracts(rec.state).ok
        cid = contract_id(t.contract, t.version) if t.contract and t.version else None
        claim_new = (t.contract, t.version) != (rec.contract, rec.version) or cid not in self._started
        if claim_new and self._refused(parts, self._claim(device, t.contract, t.version)):
            return  # telemetry naming a contract not issued to this device changes nothing
        before = self.live.get(device)
        self.live[device] = live = live_entry(t, self.clock())
        self._dirty.add(device)
        self._telemetry_alarms(device, before, live)
        self._track_health(device, t, live)
        if (t.contract, t.version) != (rec.contract, rec.version) and not fault:
            self.store.devices.update(device, contract=t.contract, version=t.version)
        if cid is not None and t.mode == "running" and not fault:
            if cid not in self._started:
                self._contract_event(cid, ContractEvent.START, "running")
                self._started.add(cid)
        if rec.state in (DeviceState.UNKNOWN, DeviceState.PROJECTED):
            # Other states take TELEMETRY as a self-loop: skip it, since every event is a durable
            # (fsync'd) transaction and telemetry arrives every second from every device.
            self._event(device, DeviceEvent.TELEMETRY)
        if self.store.devices.get(device).state is DeviceState.RECONCILING:
            if device not in self._snapshotted:  # once per stay: a moving target is never met
                self._snapshotted.add(device)
                self._heard(device, t.seq)
            await self._maybe_caught_up(device)

    def _telemetry_alarms(self, device: str, before: Mapping[str, Any] | None,
                          live: Mapping[str, Any]) -> None:
        changes = telemetry_changes(before, live["safe"], live["trip"], live["mode"])
        for kind, detail in changes.raise_:
            # The journal reports the same fact: telemetry only fills in if it is not known yet,
            # so an alarm's count counts occurrences, not messages.
            if not self.store.alarms.find(device=device, kind=kind):
                self._alarm(device, kind, detail)
        for kind in changes.clear:
            self.store.alarms.clear_kind(device, kind, self.clock())

    def _track_health(self, device: str, t: Telemetry, live: Mapping[str, Any]) -> None:
        """Since when this device's telemetry has shown every input of its contract healthy
        (hub/lineage.py: the settle time before an explicit retry after a trip)."""
        cid = contract_id(t.contract, t.version) if t.contract and t.version else None
        contract = self._contract_doc(cid) if cid else None
        healthy = contract is not None and inputs_healthy(
            contract, live["values"], live["read_ms"], live["ts_ms"])
        if not healthy:
            self._healthy_since.pop(device, None)
        else:
            self._healthy_since.setdefault(device, self.clock())

    def _contract_doc(self, cid: str) -> Contract | None:
        if cid not in self._contracts:
            try:
                self._contracts[cid] = parse_contract(self.store.contracts.get(cid).document)
            except NotFound:
                return None
        return self._contracts[cid]

    async def _on_result(self, parts: TopicParts, payload: bytes) -> None:
        r = ContractResult.from_bytes(payload)
        cid = contract_id(r.contract, r.version)
        if not self._admitted(parts):
            return
        if self._refused(parts, self._claim(parts.device, r.contract, r.version)) or self._refused(
                parts, may_change_contracts(self.store.devices.get(parts.device).state)):
            return
        if r.accepted:
            self._contract_event(cid, ContractEvent.ACCEPT, r.detail)
            return
        if self._contract_event(cid, ContractEvent.REFUSE, f"{r.refusal}: {r.detail}"):
            record = self.store.contracts.get(cid)
            await self.offline.apply_policy(parse_contract(record.document), record,
                                            FailureCategory.CONFIG, f"refused: {r.refusal}", None)

    async def _on_commission_report(self, parts: TopicParts, payload: bytes) -> None:
        if self._admitted(parts):
            take_reply(self.store, parts.device, payload, self.clock())

    # -- background -----------------------------------------------------------------------
    async def _ticker(self) -> None:
        next_flush = time.monotonic()
        while True:
            raise_if_cancelled()
            await asyncio.sleep(TICK_S)
            async with self._lock:
                self._begin()
                try:
                    self._check_silence()
                    self._check_stalls()
                    self._refresh_projections()
                    await self._reconcile_requests()
                    await self.offline.retry_pending()
                    if time.monotonic() >= next_flush:
                        self.flush_live()
                        next_flush = time.monotonic() + FLUSH_S
                except (sqlite3.Error, StoreError) as exc:
                    self._batch_failed(exc)
            await self.commit()

    async def _reconcile_requests(self) -> None:
        """Operators' POST /api/contracts/{id}/reconcile, oldest first; each is finished once
        handled, whether or not the journal held a run to compare (then an alarm says so)."""
        for req in self.store.reconciliations.open_requests():
            try:
                record = self.store.contracts.get(req.contract)
                done = await self.offline.reconcile_contract(record, req.actor)
                if done is None:
                    self._alarm(req.device, AlarmKind.RECONCILE_EMPTY,
                                f"{req.contract}: no run of this contract in the journal yet")
            except NotFound:
                log.warning("reconcile_request_unknown contract=%s", req.contract)
            self.store.reconciliations.finish_request(req.id, self.clock())

    def _check_silence(self) -> None:
        now = self.clock()
        for d in self.store.devices.find():
            if d.state in (DeviceState.LIVE, DeviceState.RECONCILING, DeviceState.RECONCILED):
                seen = max(self.live.get(d.id, {}).get("ts_ms", 0), d.last_seen_ms or 0)
                if now - seen > self.silence_timeout_ms:
                    self._event(d.id, DeviceEvent.SILENCE, f"silent for {(now - seen) // 1000} s")

    def _check_stalls(self) -> None:
        """A live device whose telemetry reports journal beyond what the hub holds, while the
        hub's cursor has not moved for the silence timeout, is not shown live: a trip may sit in
        the part of the journal the hub does not have."""
        now = self.clock()
        for d in self.store.devices.find(DeviceState.LIVE):
            head = self.live.get(d.id, {}).get("seq", 0)
            since = self._advanced_ms.setdefault(d.id, now)
            if head > self._cursor(d).seq and now - since > self.silence_timeout_ms:
                self._event(d.id, DeviceEvent.JOURNAL_STALLED,
                            f"journal at {self._cursor(d).seq}, device at {head}")

    def _refresh_projections(self) -> None:
        for d in self.store.devices.find(DeviceState.PROJECTED):
            if isinstance(d.projection, Mapping) and d.projection.get("source") == "projection":
                self._store_projection(d.id, dict(d.projection))

    def _store_projection(self, device: str, blob: dict[str, Any]) -> None:
        now = self.clock()
        blob = _with_current(blob, self.offline.points(device, blob), now)
        blob["confidence"] = self.offline.confidence_at(blob, now)
        self.store.devices.update(device, projection=blob)

    def flush_live(self) -> None:
        """Persist the latest live values of devices that sent telemetry since the last flush."""
        records = {d.id: d for d in self.store.devices.find()}  # one read, not one per device
        updates = {}
        for device in sorted(self._dirty & records.keys()):
            rec = records[device]
            if isinstance(rec.projection, Mapping) and rec.projection.get("source") == "projection":
                continue  # an outage not yet reconciled: the projection is evidence, keep it
            live = self.live[device]
            updates[device] = {"last_seen_ms": live["ts_ms"], "projection": {
                "source": "live", **{k: live[k] for k in LIVE_FIELDS}}}
        self.store.devices.update_many(updates)
        self._dirty.clear()


def _gap_row(device: str, g: Gap) -> JournalRow:
    """A gap kept in the hub's journal at its first seq, so a reader sees the hole rather than a
    silent jump. Its hashes link the rows around it (`before` → `after`); it is the hub's record,
    not an agent entry, and says so."""
    body = {"missing_from": g.from_seq, "missing_to": g.to_seq, "reason": g.reason,
            "recorded_by": "hub"}
    return JournalRow(device=device, seq=g.from_seq, ts_ms=g.ts_ms, kind=EntryKind.GAP.value,
                      body=encode_body(body), prev_hash=g.before, hash=g.after)


def _with_current(blob: dict[str, Any], points: list[dict[str, Any]], now_ms: EpochMs) -> dict[str, Any]:
    """The stored projection with the sample in force now surfaced as ts_ms/values for the API."""
    current = current_point(points, now_ms)
    blob["current"] = current
    blob["ts_ms"] = blob.get("inputs", {}).get("start_ms", now_ms)
    if current is not None:
        blob["values"] = {**current["modelled"], **current["outputs"]}
        blob["step"], blob["mode"] = current["step"], current["mode"]
    return blob
