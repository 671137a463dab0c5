"""What the hub does when an operator asks: submit, hold, abort, request a reconciliation.

Rules:
- I/O is injected: the store, a signer `(Contract) -> bytes`, a Publisher (hub/publisher.py: MQTT
  in production, MemoryPublisher in tests), and a clock `() -> int` in epoch ms. What is admitted
  is decided by pure rules (hub/admission.py); this module applies them, audits and raises.
- A submission is refused, before anything is stored, when it is invalid (every issue, 422), when
  its version is not newer than the highest known for that contract id (rollback protection,
  invariant 6; 409), or when its write points overlap those of another contract id that still
  claims points on the same device (single writer, invariant 2; 409 naming both and the points).
- Every step is audited with its actor and outcome, refusals included.
- Decoding, validation, conflict parsing and signing run in a CpuWorker thread, never on the event
  loop (`/health` answers while a 2,048-point contract is checked); the admission checks and the
  insert run under one lock, so two concurrent submissions cannot both pass the conflict check.
- State changes happen only after the publish they depend on succeeded, so a failed publish leaves
  the record where it was (SUBMITTED for a push) and a retry is safe.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from contracts.codec import content_hash
from contracts.errors import ContractInvalid, Issue
from contracts.inputs import Command, CommandKind
from contracts.loader import check_mapping
from contracts.schema import Contract
from contracts.schema_parse import parse_contract
from contracts.schema_serialize import to_mapping
from contracts.types import EpochMs
from hub.admission import absorbs, conflict_issues, stale_version, write_conflicts
from hub.audit import AuditAction, AuditEntry, Outcome, log_entry
from hub.alarms import DEVICE_RESET_CLEARS
from hub.claims import UNKNOWN_DEVICE
from hub.errors import RemoteErrorCounts
from hub.live import LiveValues
from hub.publisher import Publisher
from hub.refusals import (IllegalRequest, InvalidContract, PublishFailed, RequestRefused,
                          StaleVersion, WriteConflict)
from hub.registry import DeviceRegistry
from hub.states import ContractEvent, ContractStatus, DeviceEvent, IllegalTransition, transition
from hub.store import Alarm, ContractRecord, DeviceRecord, Duplicate, HubStore, contract_id
from hub.worker import CpuWorker

# The refusals live in hub/refusals.py; re-exported here, where they were first defined.
__all__ = ["RESUMABLE", "Clock", "HubService", "IllegalRequest", "InvalidContract", "PublishFailed",
           "RequestRefused", "Signer", "StaleVersion", "WriteConflict"]

log = logging.getLogger("fieldpact.hub.service")

RESUMABLE = frozenset({ContractStatus.TRIPPED, ContractStatus.HELD})


Signer = Callable[[Contract], bytes]
Clock = Callable[[], EpochMs]


class HubService:
    """The hub's business operations. Async only where they publish."""

    def __init__(self, store: HubStore, signer: Signer, publisher: Publisher, clock: Clock,
                 worker: CpuWorker | None = None, registry: DeviceRegistry | None = None) -> None:
        self.store, self.signer, self.publisher, self.clock = store, signer, publisher, clock
        self.worker = worker or CpuWorker()
        self._admission = asyncio.Lock()
        self.mqtt_failure: str | None = None
        """Why the hub's MQTT side stopped, once it has (hub/app.py sets it; /health reports it)."""
        self.live: Mapping[str, LiveValues] = {}
        self.live_contracts: Mapping[str, Mapping[str, LiveValues]] = {}  # device -> contract
        """The sync side's latest telemetry per device (hub/sync sets it; read-only here)."""
        self.remote_errors = RemoteErrorCounts()
        """The sync side's count of devices' out-of-order messages (hub/sync sets it; metrics)."""
        self.registry = registry or DeviceRegistry(store)

    def _audit(self, actor: str, action: AuditAction, outcome: Outcome, *,
               device: str | None = None, contract: str | None = None, reason: str | None = None,
               **detail: Any) -> None:
        entry = AuditEntry(ts_ms=self.clock(), actor=actor, action=action, outcome=outcome,
                           device=device, contract=contract, reason=reason, detail=detail)
        self.store.audit.add(entry)
        log_entry(entry)

    async def submit_contract(self, document: Mapping[str, Any], actor: str, *,
                              lineage: str | None = None) -> ContractRecord:
        """Check, sign, store and push a contract; returns it in status PUSHED. `lineage` is the
        planner's (hub/lineage.py): an operator's submission starts its own.

        Raises InvalidContract, StaleVersion, WriteConflict, or PublishFailed (then the contract
        is stored in SUBMITTED and the failure audited)."""
        contract = await self._check(document, actor)
        cid = contract_id(contract.contract, contract.version)
        self._check_registered(contract, actor)
        async with self._admission:
            self._check_version(contract, actor)
            await self._check_conflicts(contract, actor)
            record = await self._store_signed(contract, actor, lineage)
        try:
            await self.publisher.push_contract(contract.site, contract.device, record.signed)
        except Exception as exc:  # any transport failure: audited, then refused as 503
            self._audit(actor, AuditAction.PUSH, Outcome.FAILED, device=contract.device,
                        contract=cid, reason=str(exc))
            raise PublishFailed(f"contract {cid} stored but not pushed: {exc}") from exc
        with self.store.tx():  # one commit for the push's record, its audit, what it supersedes
            self.store.contracts.apply_event(cid, ContractEvent.PUSH, self.clock(), f"by {actor}")
            self._audit(actor, AuditAction.PUSH, Outcome.OK, device=contract.device, contract=cid)
            self._supersede_older(contract, actor)
        return self.store.contracts.get(cid)

    async def _check(self, document: Mapping[str, Any], actor: str) -> Contract:
        try:
            return await self.worker.run(check_mapping, document)
        except ContractInvalid as exc:
            self._refuse_submit(actor, document, "invalid", [str(i) for i in exc.issues])
            raise InvalidContract(f"contract is invalid ({len(exc.issues)} issues)",
                                  exc.issues) from exc

    def _check_registered(self, c: Contract, actor: str) -> None:
        """Only registered devices exist: a contract never creates one (issue 9)."""
        verdict = self.registry.admits(c.site, c.device)
        if verdict.ok:
            return
        where = "device" if verdict.alarm == UNKNOWN_DEVICE else "site"
        self._refuse_submit(actor, to_mapping(c), "unknown_device", [f"{where}: {verdict.detail}"],
                            contract_id(c.contract, c.version))
        raise InvalidContract(f"contract is invalid: {verdict.detail}",
                              [Issue(path=where, reason=verdict.detail)])

    def _refuse_submit(self, actor: str, document: Mapping[str, Any], reason: str,
                       issues: list[str], contract: str | None = None) -> None:
        raw = document.get("device") if isinstance(document, Mapping) else None
        device = raw if isinstance(raw, str) else None
        self._audit(actor, AuditAction.SUBMIT, Outcome.REFUSED, device=device, contract=contract,
                    reason=reason, issues=issues)

    def _check_version(self, c: Contract, actor: str) -> None:
        why = stale_version(c, self.store.contracts.highest_version(c.contract))
        if why is not None:
            self._refuse_submit(actor, to_mapping(c), "stale_version", [f"version: {why}"],
                                contract_id(c.contract, c.version))
            raise StaleVersion(f"contract {c.contract}: {why}",
                               [Issue(path="version", reason=why)])

    async def _check_conflicts(self, c: Contract, actor: str) -> None:
        docs = [r.document for r in self.store.contracts.find(device=c.device) if r.status.claims_points]
        found = await self.worker.run(
            lambda: write_conflicts(c, (parse_contract(d) for d in docs)))
        if not found:
            return
        cid = contract_id(c.contract, c.version)
        issues = conflict_issues(c, found)
        self._refuse_submit(actor, to_mapping(c), "write_conflict", [str(i) for i in issues], cid)
        others = sorted({o.other for o in found})
        raise WriteConflict(f"contract {cid} conflicts with {', '.join(others)} on device "
                            f"{c.device}", issues)

    async def _store_signed(self, c: Contract, actor: str, lineage: str | None) -> ContractRecord:
        signed, document, digest = await self.worker.run(
            lambda: (self.signer(c), to_mapping(c), content_hash(c)))
        cid, now = contract_id(c.contract, c.version), self.clock()
        record = ContractRecord(
            id=cid, contract=c.contract, version=c.version, device=c.device, site=c.site,
            status=ContractStatus.SUBMITTED, document=document, signed=signed,
            content_hash=digest, created_ms=now, updated_ms=now, reason=f"by {actor}",
            lineage=lineage or cid)
        try:
            with self.store.tx():  # stored and audited in one commit, before it is published
                self.store.contracts.insert(record)
                self.store.devices.ensure(c.device, c.site, now, self.registry.labels(c.device))
                self._audit(actor, AuditAction.SUBMIT, Outcome.OK, device=c.device, contract=cid)
                self._audit(actor, AuditAction.SIGN, Outcome.OK, device=c.device, contract=cid,
                            content_hash=record.content_hash)
        except Duplicate as exc:  # a concurrent submission of the same version won the race
            self._refuse_submit(actor, record.document, "stale_version", [str(exc)], cid)
            raise StaleVersion(str(exc), [Issue(path="version", reason=str(exc))]) from exc
        return record

    def _supersede_older(self, c: Contract, actor: str) -> None:
        for old in self.store.contracts.find(contract=c.contract, device=c.device):
            if old.version < c.version and old.status.claims_points:
                self.store.contracts.apply_event(old.id, ContractEvent.SUPERSEDE, self.clock(),
                                                f"superseded by version {c.version}")
                self._audit(actor, AuditAction.TRANSITION, Outcome.OK, device=c.device,
                            contract=old.id, reason="superseded", by=c.version)

    async def hold(self, cid: str, actor: str, reason: str | None = None) -> ContractRecord:
        """Send HOLD to the agent, then mark the contract HELD. Raises NotFound, IllegalRequest,
        PublishFailed."""
        return await self._command(cid, actor, reason, CommandKind.HOLD, ContractEvent.HOLD,
                                   AuditAction.HOLD)

    async def abort(self, cid: str, actor: str, reason: str | None = None) -> ContractRecord:
        """Send ABORT (outputs to safe_state) to the agent, then mark the contract ABORTED.
        Raises NotFound, IllegalRequest, PublishFailed."""
        return await self._command(cid, actor, reason, CommandKind.ABORT, ContractEvent.ABORT,
                                   AuditAction.ABORT)

    async def _command(self, cid: str, actor: str, reason: str | None, kind: CommandKind,
                       event: ContractEvent, action: AuditAction) -> ContractRecord:
        record = self.store.contracts.get(cid)
        audit = dict(device=record.device, contract=cid)
        try:
            transition(record.status, event)
        except IllegalTransition as exc:
            self._audit(actor, action, Outcome.REFUSED, reason=str(exc), **audit)
            raise IllegalRequest(str(exc), [Issue(path="status", reason=str(exc))]) from exc
        command = Command(kind=kind, id=f"{kind.value}:{cid}:{self.clock()}")
        await self._send(record, command, actor, action, "reason", audit)
        self.store.contracts.apply_event(cid, event, self.clock(), reason or f"by {actor}")
        self._audit(actor, action, Outcome.OK, reason=reason, command=command.id, **audit)
        return self.store.contracts.get(cid)

    async def resume(self, cid: str, actor: str, reason: str) -> Command:
        """Send RESUME to the agent for a tripped or held contract. The status changes only when
        the device's journal shows the resume: the agent refuses one while the trip's cause
        persists (journaled, then an alarm at the hub). Raises NotFound, IllegalRequest,
        PublishFailed."""
        record = self.store.contracts.get(cid)
        audit = dict(device=record.device, contract=cid, reason=reason)
        if record.status not in RESUMABLE:
            why = f"contract {cid} is {record.status.value}: only a tripped or held contract " \
                  "can be resumed"
            self._audit(actor, AuditAction.RESUME, Outcome.REFUSED, status=record.status.value,
                        **audit)
            raise IllegalRequest(why, [Issue(path="status", reason=why)])
        command = Command(kind=CommandKind.RESUME, id=f"resume:{cid}:{self.clock()}")
        await self._send(record, command, actor, AuditAction.RESUME, "error", audit)
        self._audit(actor, AuditAction.RESUME, Outcome.OK, command=command.id, **audit)
        return command

    async def _send(self, record: ContractRecord, command: Command, actor: str,
                    action: AuditAction, error_key: str, audit: Mapping[str, Any]) -> None:
        """Send `command` to the record's device. A transport failure is audited (the error under
        `error_key`) and raised as PublishFailed; nothing changed state."""
        try:
            await self.publisher.send_command(record.site, record.device, command,
                                              record.contract)
        except Exception as exc:  # any transport failure: audited, state unchanged
            self._audit(actor, action, Outcome.FAILED, **{**audit, error_key: str(exc)})
            raise PublishFailed(f"{command.kind.value} for {record.id} not sent: {exc}") from exc

    def reset_device(self, device: str, actor: str, reason: str) -> DeviceRecord:
        """An admin's RESET of a device in FAULT (back to UNKNOWN: it is trusted again from its
        next birth). Clears the alarms a reset answers. Raises NotFound, IllegalRequest."""
        now = self.clock()
        try:
            self.store.devices.apply_event(device, DeviceEvent.RESET, now, f"{reason} (by {actor})")
        except IllegalTransition as exc:
            self._audit(actor, AuditAction.RESET, Outcome.REFUSED, device=device, reason=reason,
                        error=str(exc))
            raise IllegalRequest(str(exc), [Issue(path="state", reason=str(exc))]) from exc
        for kind in DEVICE_RESET_CLEARS:
            self.store.alarms.clear_kind(device, kind, now)
        self._audit(actor, AuditAction.RESET, Outcome.OK, device=device, reason=reason)
        return self.store.devices.get(device)

    def ack_alarm(self, alarm_id: int, actor: str) -> Alarm:
        """Acknowledge an alarm (audited). Raises NotFound."""
        alarm = self.store.alarms.ack(alarm_id, actor, self.clock())
        self._audit(actor, AuditAction.ACK, Outcome.OK, device=alarm.device, alarm=alarm_id,
                    kind=alarm.kind)
        return alarm

    def request_reconcile(self, cid: str, actor: str) -> tuple[int, bool]:
        """Record that an operator asked for a reconciliation of `cid`; the sync side picks it up
        from `store.reconciliations.open_requests()`. Returns (request id, whether it is new): a request
        still open, or one made less than 10 s ago, absorbs a repeat (hub/admission.py), which then
        writes nothing (no row, no audit, no alarm), so a flood of requests stays bounded.
        Raises NotFound."""
        record = self.store.contracts.get(cid)
        latest = self.store.reconciliations.latest_request(cid)
        if latest is not None and absorbs(latest, self.clock()):
            log.debug("reconcile_request_absorbed contract=%s request=%s", cid, latest.id)
            return latest.id, False
        request = self.store.reconciliations.add_request(cid, record.device, actor, self.clock())
        self._audit(actor, AuditAction.RECONCILE_REQUEST, Outcome.OK, device=record.device,
                    contract=cid, request=request)
        return request, True

