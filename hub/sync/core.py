"""The sync side's shared state and the few operations every handler uses.

`SyncCore` holds what the MQTT side knows in memory (live values, ingest cursors, catch-up
targets, held acks) and applies decisions to the store:
- `_event` moves a device by an event through the store's state table. An illegal event the
  device's message triggered is a RemoteProtocolError: logged, counted (`remote_errors`), and the
  device stays where it is; one the hub triggered itself is a bug and raises (hub/states.refused).
- `_contract_event` does the same for a contract (every contract event the sync side applies is
  the device's word: accepted, refused, started, tripped, resumed, completed, failed).
- `_refused` logs and alarms a refused claim (hub/claims.py decides), bounded by `RefusalLog`.
- `store_projection` writes a projected device's blob as it stands now (the sample in force
  surfaced as values/step/mode, with its confidence): on entering PROJECTED and each tick.
The handlers (presence.py, journal.py, background.py, batches.py) build on it; HubSync
(dispatcher.py) puts them together.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from contracts.limits import quote
from contracts.schema import Contract
from contracts.schema_parse import parse_contract
from contracts.types import EpochMs
from hub.alarms import AlarmKind
from hub.claims import UNKNOWN_DEVICE, Verdict, contract_claim
from hub.errors import IllegalTransition, PeerFault, RemoteErrorCounts, RemoteProtocolError
from hub.ingest import Cursor, DeviceIngest, PendingBudget
from hub.live import LiveCache, LiveValues
from hub.offline import OfflineManager
from hub.registry import DeviceRegistry
from hub.states import ContractEvent, DeviceEvent, DeviceState, refused
from hub.store import ContractRecord, DeviceRecord, HubStore, NotFound, contract_id
from hub.sync.decisions import RefusalLog, caught_up
from hub.sync.outbound import HeldAcks
from transport.mqtt import MqttLink

log = logging.getLogger("fieldpact.hub.sync")

INBOX = 256
"""Messages queued between the link and the worker; when full, the link waits (backpressure)."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ContractCache:
    """The hub's contract records as the sync side looks them up, parsed once per id (telemetry
    checks its contract every second)."""

    def __init__(self, store: HubStore) -> None:
        self.store = store
        self._parsed: dict[str, Contract] = {}

    def record(self, cid: str) -> ContractRecord | None:
        try:
            return self.store.contracts.get(cid)
        except NotFound:
            return None

    def parsed(self, cid: str) -> Contract | None:
        if cid not in self._parsed:
            record = self.record(cid)
            if record is None:
                return None
            self._parsed[cid] = parse_contract(record.document)
        return self._parsed[cid]


class SyncCore:
    def __init__(self, store: HubStore, offline: OfflineManager, link: MqttLink, *,
                 silence_timeout_ms: int, clock: Callable[[], EpochMs] = wall_ms,
                 registry: DeviceRegistry | None = None) -> None:
        self.store, self.offline, self.link = store, offline, link
        self.silence_timeout_ms, self.clock = silence_timeout_ms, clock
        self.registry = registry or offline.service.registry  # one per hub, shared with the API
        self.boot_id = uuid.uuid4().hex
        self.live: LiveCache = {}
        self._dirty: set[str] = set()  # devices whose live values are not flushed yet
        self._ingest: dict[str, DeviceIngest] = {}
        self._pending_budget = PendingBudget()
        # Catch-up target per device in `reconciling`: the head it reported since it entered;
        # absent = it has not spoken since (then it is not caught up, whatever the cursor says).
        self._target: dict[str, int] = {}
        self._snapshotted: set[str] = set()  # telemetry head already taken into the target
        self._advanced_ms: dict[str, EpochMs] = {}  # when each device's cursor last moved
        self._started: set[str] = set()  # contract ids already moved to ACTIVE by telemetry
        self._healthy_since: dict[str, EpochMs] = {}
        self._journal_cid: dict[str, str | None] = {}
        """device -> contract id of its latest BOOT entry; None when that contract was not issued
        to the device (its entries then change no contract). Also "device\0contract" -> the
        contract id of that contract's latest BOOT: an agent running several contracts tags each
        entry with its contract (`_entry_of`, the entry being handled), so its entries change
        their own contract."""
        self._entry_of: str | None = None
        self._running: dict[str, frozenset[tuple[str | None, int | None]]] = {}
        """device -> the (contract, version) pairs its latest birth listed as running."""
        self.live_contracts: dict[str, dict[str, LiveValues]] = {}
        """device -> contract id -> its latest telemetry (an agent sends one per contract)."""
        self._contracts = ContractCache(store)  # parsed once: telemetry checks them each second
        self._lock = asyncio.Lock()
        self._inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(INBOX)
        self._acks = HeldAcks()
        self._uncommitted = 0  # journal entries in the open batch
        self._touched: set[str] = set()  # devices whose messages the open batch holds
        self._refusals = RefusalLog()
        self._unsigned_seen: set[str] = set()  # see _unsigned
        self.entries_ingested = 0
        self.write_errors = 0
        self.last_write_error: str | None = None
        self.remote_errors = RemoteErrorCounts()
        offline.healthy_since = self._healthy_since.get
        offline.service.live = self.live  # the API shows these, fresher than the flushed copy
        offline.service.live_contracts = self.live_contracts
        offline.service.remote_errors = self.remote_errors

    # -- state machines -------------------------------------------------------------------
    def _event(self, device: str, event: DeviceEvent, reason: str | None = None) -> DeviceState:
        """Apply `event`; the state after it (unchanged when the device's event was refused)."""
        try:
            changed = self.store.devices.apply_event(device, event, self.clock(), reason)
        except IllegalTransition as exc:
            self._peer_fault(refused(exc, device, device))
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
            live = self.live.get(device)
            if rec.contract in self.live_contracts.get(device, {}):  # the projected one's own
                live = self.live_contracts[device][rec.contract]
            seeds = {name: lv.seed() for name, lv in self.live_contracts.get(device, {}).items()
                     if name}  # each contract from its own telemetry
            blob = self.offline.start_projection(rec, live.seed() if live else None,
                                                 self._cursor(rec).seq, seeds)
            if blob is not None:
                store_projection(self.store, self.offline, device, blob, self.clock())

    async def _maybe_caught_up(self, device: str) -> None:
        """A device in `reconciling` whose journal caught up: reconcile it, then it is live."""
        rec = self.store.devices.get(device)
        if not caught_up(rec.state, self._target.get(device), self._cursor(rec).seq):
            return
        if self._event(device, DeviceEvent.JOURNAL_CAUGHT_UP) is DeviceState.RECONCILED:
            report = await self.offline.reconcile_device(self.store.devices.get(device))
            if report is not None:
                self.store.devices.update(device, drift=report.report, projection=None)
            why = f"reconciliation {report.id}" if report else "no outage to reconcile"
            self._event(device, DeviceEvent.RECONCILE_DONE, why)

    def _contract_event(self, device: str, cid: str, event: ContractEvent, reason: str) -> bool:
        """Apply the device's word `event` to contract `cid`; whether a transition was written."""
        try:
            return self.store.contracts.apply_event(cid, event, self.clock(), reason).written
        except IllegalTransition as exc:
            self._peer_fault(refused(exc, device, cid))
        except NotFound as exc:
            self._peer_fault(RemoteProtocolError(PeerFault.UNKNOWN_RECORD, device,
                                                 f"{event.value}: {exc}"))
        return False

    def _peer_fault(self, exc: RemoteProtocolError) -> None:
        """A device's message the hub cannot apply: logged and counted, never raised further."""
        self.remote_errors.count(exc)
        log.warning("hub_bad_message device=%s fault=%s error=%s", quote(exc.device, bare=True),
                    exc.fault.value, exc.detail)

    # -- what the hub knows of a device ---------------------------------------------------
    def _known(self, device: str) -> bool:
        if not self.registry.registered(device):
            return False
        try:
            self.store.devices.get(device)
        except NotFound:
            return False
        return True

    def _cursor(self, device: DeviceRecord) -> Cursor:
        ing = self._ingest.get(device.id)
        if ing is not None:
            return ing.cursor
        if device.acked_seq and device.last_hash:
            return Cursor(seq=device.acked_seq, hash=device.last_hash)
        return Cursor()

    def _heard(self, device: str, head: int) -> None:
        """The device spoke since it entered `reconciling`, reporting journal head `head`."""
        self._target[device] = max(self._target.get(device, 0), head)

    def _alarm(self, device: str, kind: str, detail: str) -> None:
        self.store.alarms.raise_(device, kind, detail, self.clock())
        log.error("alarm device=%s kind=%s detail=%s", device, kind, quote(detail, bare=True))

    # -- claims (hub/claims.py decides; these only look up what the hub knows) -------------
    def _refused(self, device: str, channel: str, verdict: Verdict) -> bool:
        """Log and alarm a refused message; True if it was refused (it then changes nothing).
        The same refusal repeated (telemetry every second) is logged and alarmed once a minute."""
        if verdict.ok:
            return False
        if not self._refusals.due((device, verdict.alarm, verdict.detail), self.clock()):
            return True
        log.warning("claim_refused device=%s channel=%s alarm=%s detail=%s", quote(device, bare=True),
                    channel, verdict.alarm, quote(verdict.detail, 300, bare=True))
        if verdict.alarm is not None and (verdict.alarm != UNKNOWN_DEVICE
                                          or self.registry.first_sight(device)):
            self._alarm(device, verdict.alarm, verdict.detail)
        return True

    def _admitted(self, site: str, device: str, channel: str) -> bool:
        """A registered device of that site (else refused and alarmed) that has been born."""
        refused_ = self._refused(device, channel, self.registry.admits(site, device))
        return not refused_ and self._known(device)

    def _claim(self, device: str, contract: str | None, version: int | None) -> Verdict:
        if not contract or not version:
            return Verdict(ok=True)
        cid = contract_id(contract, version)
        return contract_claim(device, cid, self._contracts.record(cid))

    def _unsigned(self, device: str) -> None:
        """An unsigned batch from a device with no enrolled key passed (require_signed_journals
        is off): accepted, but never silently — one alarm per device until a key is enrolled."""
        if device not in self._unsigned_seen:
            self._unsigned_seen.add(device)
            self._alarm(device, AlarmKind.UNSIGNED_JOURNAL,
                        "journal batches are unsigned and no journal key is enrolled: enroll the "
                        "agent's key (fieldpact agent pubkey) or set require_signed_journals")


def store_projection(store: HubStore, offline: OfflineManager, device: str,
                     blob: dict[str, Any], now: EpochMs) -> None:
    """Write `device`'s projection as it stands at `now` (the sample in force surfaced as
    ts_ms/values for the API, each contract's too), with its confidence then."""
    store.devices.update(device, projection=offline.current(device, blob, now))
