"""What a device says about itself: its status (birth or last will), telemetry, contract results.

  status     retained birth → register/refresh the device, BIRTH; "offline" (last will) → WILL and
             start a projection. At birth the hub re-pushes the contract it expects the device to
             run if the device reports another (QoS is not trusted for delivery).
  telemetry  live values (kept in memory, flushed to the store every FLUSH_S), TELEMETRY.
  contract/result  ACCEPT/REFUSE the contract version; a refusal goes to the planner (config).
Each handler checks the message's claims first (hub/claims.py), asks hub/sync/decisions.py what it
changes, and applies that. A refused message changes nothing.
"""
from __future__ import annotations

import logging

from contracts.engine_state import Mode
from contracts.schema_parse import parse_contract
from contracts.topics import TopicParts
from contracts.wire import Birth, ContractResult, Telemetry
from hub.alarms import telemetry_changes
from hub.claims import birth_claim, may_change_contracts
from hub.policy import FailureCategory
from hub.lineage import inputs_healthy
from hub.live import LiveValues
from hub.states import ContractEvent, ContractStatus, DeviceEvent, DeviceState
from hub.store import DeviceRecord, contract_id
from hub.sync.decisions import replayed, reported_cid, telemetry_plan
from hub.sync.messages import Offline
from hub.sync.core import SyncCore
from transport.mqtt import LinkDown

log = logging.getLogger("fieldpact.hub.sync")

EXPECTED = (ContractStatus.PUSHED, ContractStatus.SUBMITTED)
"""Contracts the hub expects a device to run once it is up: re-pushed at birth if it runs another."""


class Presence(SyncCore):
    # -- status ---------------------------------------------------------------------------
    async def _on_status(self, parts: TopicParts, msg: Birth | Offline) -> None:
        device, channel = parts.device, parts.channel.value
        if isinstance(msg, Offline):
            if self._known(device):
                self._event(device, DeviceEvent.WILL, "last will")
            return
        if self._refused(device, channel, self.registry.admits(parts.site, device)) or \
                self._refused(device, channel, birth_claim(parts.site, device, msg)):
            return  # only registered devices exist; a refused birth changes nothing
        if replayed(self.store.devices.get(device) if self._known(device) else None, msg):
            return  # the broker's retained copy of a birth we already handled: not news
        # A contract the hub did not issue to this device (a local file, or another device's)
        # is alarmed and not recorded; the birth itself still says the device is up.
        trusted = not self._refused(device, channel, self._claim(device, msg.contract, msg.version))
        labels = self.registry.labels(device, msg.labels)
        self.store.devices.ensure(device, parts.site, self.clock(), labels)
        self.store.devices.update(device, boot_id=msg.boot_id,
                                 contract=msg.contract if trusted else None,
                                 version=msg.version if trusted else None,
                                 last_seq=msg.last_seq, last_seen_ms=self.clock(), labels=labels)
        self._running[device] = frozenset(
            (c, v) for c, v in msg.contracts if self._claim(device, c, v).ok) if trusted else frozenset()
        self._event(device, DeviceEvent.BIRTH, f"boot {msg.boot_id[:8]}")
        self._heard(device, msg.last_seq)
        await self._repush_if_needed(self.store.devices.get(device))
        await self._maybe_caught_up(device)

    async def _repush_if_needed(self, device: DeviceRecord) -> None:
        running = self._running.get(device.id, frozenset()) | {(device.contract, device.version)}
        for r in self.store.contracts.find(device=device.id):
            if r.status in EXPECTED and (r.contract, r.version) not in running:
                try:
                    await self.offline.service.publisher.push_contract(r.site, r.device, r.signed)
                    log.info("contract_repushed contract=%s device=%s", r.id, r.device)
                except LinkDown:
                    pass

    # -- telemetry ------------------------------------------------------------------------
    async def _on_telemetry(self, parts: TopicParts, t: Telemetry) -> None:
        device = parts.device
        if not self._admitted(parts.site, device, parts.channel.value):
            return  # a device appears on its birth, never on telemetry alone
        rec = self.store.devices.get(device)
        running = self._running.get(device, frozenset())
        plan = telemetry_plan(t, rec, self._started, fault=not may_change_contracts(rec.state).ok,
                              running=running)
        if plan.check_claim and self._refused(device, parts.channel.value,
                                              self._claim(device, t.contract, t.version)):
            return  # telemetry naming a contract not issued to this device changes nothing
        if t.contract is not None:  # one telemetry per contract: this one runs beside the others
            self._running[device] = running | {(t.contract, t.version)}
        per_contract = self.live_contracts.setdefault(device, {})
        before = per_contract.get(t.contract or "") if t.contract else self.live.get(device)
        self.live[device] = live = LiveValues.of(t, self.clock())
        per_contract[t.contract or ""] = live  # each contract's own (an agent runs several)
        self._dirty.add(device)
        self._telemetry_alarms(device, before, live)
        self._track_health(device, t, live)
        if plan.record_contract:
            self.store.devices.update(device, contract=t.contract, version=t.version)
        if plan.start is not None:
            self._contract_event(device, plan.start, ContractEvent.START, Mode.RUNNING.value)
            self._started.add(plan.start)
        if plan.event is not None:
            self._event(device, plan.event)
        # Only an event moves the device's state (a contract's start or record does not).
        state = rec.state if plan.event is None else self.store.devices.get(device).state
        if state is DeviceState.RECONCILING:
            if device not in self._snapshotted:  # once per stay: a moving target is never met
                self._snapshotted.add(device)
                self._heard(device, t.seq)
            await self._maybe_caught_up(device)

    def _telemetry_alarms(self, device: str, before: LiveValues | None, live: LiveValues) -> None:
        changes = telemetry_changes(
            {"safe": before.safe, "trip": before.trip} if before else None,
            live.safe, live.trip, live.mode, live.faults)
        for kind, detail in changes.raise_:
            # The journal reports the same fact: telemetry only fills in if it is not known yet,
            # so an alarm's count counts occurrences, not messages.
            if not self.store.alarms.find(device=device, kind=kind):
                self._alarm(device, kind, detail)
        for kind in changes.clear:
            self.store.alarms.clear_kind(device, kind, self.clock())

    def _track_health(self, device: str, t: Telemetry, live: LiveValues) -> None:
        """Since when this device's telemetry has shown every input of its contract healthy
        (hub/lineage.py: the settle time before an explicit retry after a trip)."""
        cid = reported_cid(t.contract, t.version)
        contract = self._contracts.parsed(cid) if cid else None
        if contract is None or not inputs_healthy(contract, live.values, live.read_ms, live.ts_ms):
            self._healthy_since.pop(device, None)
        else:
            self._healthy_since.setdefault(device, self.clock())

    # -- contract results -----------------------------------------------------------------
    async def _on_result(self, parts: TopicParts, r: ContractResult) -> None:
        device, channel = parts.device, parts.channel.value
        cid = contract_id(r.contract, r.version)
        if not self._admitted(parts.site, device, channel):
            return
        if self._refused(device, channel, self._claim(device, r.contract, r.version)) or \
                self._refused(device, channel, may_change_contracts(self.store.devices.get(device).state)):
            return
        if r.accepted:
            self._contract_event(device, cid, ContractEvent.ACCEPT, r.detail)
            return
        if self._contract_event(device, cid, ContractEvent.REFUSE, f"{r.refusal}: {r.detail}"):
            record = self.store.contracts.get(cid)
            await self.offline.apply_policy(parse_contract(record.document), record,
                                            FailureCategory.CONFIG, f"refused: {r.refusal}", None)
