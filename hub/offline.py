"""Offline devices: projection while they are gone, reconciliation and replanning when they return.

Projection (hub/projector.py): when a device goes `projected`, the hub runs each contract's engine
forward from the last engine state the device reported for it (an agent runs several contracts,
each with its own telemetry); the inputs are stored with the device so the same projection can be
recomputed exactly (the engine is pure).

Reconciliation (here): once the journal has caught up, the actual entries since the device went
offline replace the projection of each contract (its own entries: they are tagged); hub/reconcile.py
measures the divergence, one reconciliation per contract. The outage's actual history is folded
as its journal arrives (hub/actual_history.py), so the reconciliation need not read it back; any
doubt (a batch out of line, a store rollback) drops the fold and the journal is read instead.

Replanning (hub/replanner.py): a divergence goes to the policy for its failure category
(hub/planner.py); the decision is recorded and audited.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.chain import Entry, EntryKind
from contracts.chain_rows import Row
from contracts.journal_events import BodyError, BootBody, InputBody, belongs_to, decode_entry
from contracts.schema import Contract
from contracts.schema_parse import parse_contract
from contracts.types import EpochMs
from hub.actual_history import Actual, fold_rows
from hub.audit import AuditAction, DecisionAudit
from hub.planner import Decision
from hub.policy import FailureCategory, Policy, RetryConfig
from hub.projector import ProjectionInputs, Projector
from hub.reconcile import Report, reconcile, reconcile_actual
from hub.replanner import Replanner
from hub.service import HubService
from hub.states import ContractStatus
from hub.store import (ContractRecord, DeviceRecord, HubStore, NotFound, ReconciliationRecord,
                       contract_id)

log = logging.getLogger("fieldpact.hub.offline")

CONTRACTS = "contracts"
"""The stored projection's key for each projected contract's own blob, by contract name (an agent
runs several side by side, each projected from its own engine state; hub/projector.py)."""


class OfflineManager:
    def __init__(self, store: HubStore, service: HubService, policies: Mapping[FailureCategory, Policy],
                 clock: Callable[[], EpochMs], retry: RetryConfig = RetryConfig()) -> None:
        self.store, self.service, self.clock = store, service, clock
        self.audit = DecisionAudit(store.audit.add, clock)
        self.projector = Projector(store, clock)
        self.replanner = Replanner(store, service, policies, clock, retry, self.audit,
                                   lambda device: self.healthy_since(device))
        self.folds: dict[str, dict[str, _Fold]] = {}
        """Each projected device's outage, per contract (name), folded as its journal arrives."""
        self.healthy_since: Callable[[str], EpochMs | None] = lambda device: None
        """Since when the device's telemetry has shown every input healthy (set by HubSync)."""
        # What HubSync and the API ask of a projected device, and of a failed contract:
        self.points, self.confidence_at = self.projector.points, self.projector.confidence_at
        self.apply_policy = self.replanner.apply_policy
        self.retry_pending = self.replanner.retry_pending

    def running_contract(self, device: DeviceRecord) -> ContractRecord | None:
        """The contract the device reported, else the newest one claiming its points."""
        if device.contract and device.version:
            for r in self.store.contracts.find(device=device.id):
                if r.contract == device.contract and r.version == device.version:
                    return r
        claiming = [r for r in self.store.contracts.find(device=device.id) if r.status.claims_points]
        return max(claiming, key=lambda r: r.version, default=None)

    def running_contracts(self, device: DeviceRecord,
                          seeds: Mapping[str, Mapping[str, Any]]) -> list[ContractRecord]:
        """Every contract `device` runs, the one its record names first (`running_contract`);
        then each other one its telemetry reported (`seeds`: contract name -> LiveValues.seed,
        its version included) while it still claims its points, and each other one active on it."""
        primary = self.running_contract(device)
        out = [primary] if primary is not None else []
        names = {r.contract for r in out}
        for name, seed in sorted(seeds.items()):
            record = self._reported(device, name, seed.get("version"))
            if record is not None and name not in names:
                out.append(record)
                names.add(name)
        active = [r for r in self.store.contracts.find(device=device.id)
                  if r.status is ContractStatus.ACTIVE and r.contract not in names]
        for record in sorted(active, key=lambda r: (r.contract, -r.version)):
            if record.contract not in names:
                out.append(record)
                names.add(record.contract)
        return out

    def _reported(self, device: DeviceRecord, name: str, version: Any) -> ContractRecord | None:
        if not isinstance(version, int):
            return None
        try:
            record = self.store.contracts.get(contract_id(name, version))
        except NotFound:
            return None
        return record if record.device == device.id and record.status.claims_points else None

    def start_projection(self, device: DeviceRecord, live: Mapping[str, Any] | None,
                         from_seq: int, seeds: Mapping[str, Mapping[str, Any]] | None = None,
                         ) -> dict[str, Any] | None:
        """Project `device`, each contract it runs from its own last live values (`seeds`, by
        contract name; `live` for the device's own contract when it has none); the blob to store
        (the device's own contract's, with `contracts`: each one's), or None when it runs no
        contract. Each contract's outage is folded from `from_seq` on."""
        seeds = seeds or {}
        records = self.running_contracts(device, seeds)
        if not records:
            return None
        blobs: dict[str, dict[str, Any]] = {}
        folds: dict[str, _Fold] = {}
        for record in records:
            seed = seeds.get(record.contract)
            if seed is not None and seed.get("version") not in (None, record.version):
                seed = None  # telemetry of another version: not this contract's engine state
            if seed is None and record is records[0]:
                seed = live
            blobs[record.contract] = self.projector.start(device.id, record, seed, from_seq)
            folds[record.contract] = _Fold(from_seq=from_seq, next_seq=from_seq + 1,
                                           actual=Actual(), contract=record.contract)
        self.folds[device.id] = folds
        return {**blobs[records[0].contract], CONTRACTS: blobs}

    def current(self, device: str, blob: dict[str, Any], now_ms: EpochMs) -> dict[str, Any]:
        """The stored projection as it stands at `now_ms`: the sample in force and the confidence
        then, for the device's own contract and each of `contracts` (`blob` in place; each
        contract's blob copied, as a stored record's may be shared)."""
        self.projector.current(device, blob, now_ms)
        if isinstance(blob.get(CONTRACTS), Mapping):
            blob[CONTRACTS] = {name: self.projector.current(device, dict(sub), now_ms)
                               for name, sub in blob[CONTRACTS].items()}
        return blob

    def fold(self, device: str, entries: Sequence[Row]) -> None:
        """Fold a projected device's newly stored entries (seq order) into each of its
        contracts' outage history, so the reconciliation need not read and decode the whole
        outage back. A batch that does not follow the last one folded drops the folds: the
        journal is read instead."""
        folds = self.folds.get(device)
        if not folds or not entries:
            return
        first = next(iter(folds.values()))
        if entries[0].seq != first.next_seq or entries[-1].seq - entries[0].seq + 1 != len(entries):
            del self.folds[device]  # not contiguous with the fold, or a declared gap inside
            return
        for f in folds.values():
            fold_rows(f.actual, entries, f.contract)
            f.next_seq = entries[-1].seq + 1

    def forget_folds(self) -> None:
        """The store rolled back entries that were folded: read the journal instead."""
        self.folds.clear()

    def _actual(self, device: DeviceRecord, from_seq: int, contract: str) -> Actual:
        """`contract`'s outage history: the fold if it holds exactly the stored entries after
        `from_seq` (all of them, through the acked seq), else folded from the journal."""
        folds = self.folds.get(device.id, {})
        f = folds.pop(contract, None)
        if not folds:
            self.folds.pop(device.id, None)
        if f is not None and f.from_seq == from_seq and f.next_seq == device.acked_seq + 1:
            return f.actual
        return fold_rows(Actual(), self.store.journal.stored(device.id, from_seq + 1), contract)

    async def reconcile_device(self, device: DeviceRecord,
                               actor: str = "sync") -> ReconciliationRecord | None:
        """Measure divergence for a device whose journal has caught up, for each contract it was
        projected running; record each, and act. The device's own contract's record, or None when
        there was no projection to compare with."""
        blob = device.projection if isinstance(device.projection, Mapping) else None
        if blob is None or blob.get("source") != "projection":
            return None  # the device was not offline (first birth, reboot): nothing to compare
        own = await self._reconcile_one(device, blob, actor)
        for sub in (blob.get(CONTRACTS) or {}).values():
            if sub["inputs"]["contract_id"] != blob["inputs"]["contract_id"]:
                await self._reconcile_one(device, sub, actor)
        self.folds.pop(device.id, None)
        self.projector.forget(device.id)
        return own

    async def _reconcile_one(self, device: DeviceRecord, blob: Mapping[str, Any],
                             actor: str) -> ReconciliationRecord:
        """One contract's outage (its projection `blob`) against its actual journaled run."""
        now = self.clock()
        inputs = blob["inputs"]
        record = self.store.contracts.get(inputs["contract_id"])
        contract = parse_contract(record.document)
        projection = self.projector.project(record, ProjectionInputs(**inputs), device.id)
        self.projector.forget(device.id, record.contract)
        actual = self._actual(device, inputs["from_seq"], record.contract)
        report = reconcile_actual(contract, projection, actual, inputs["start_ms"], now)
        rec = await self._record(contract, record, report, now, actor, {})
        log.info("reconciled device=%s contract=%s divergent=%s action=%s reasons=%s",
                 device.id, record.id, report.divergent, rec.action, list(report.reasons))
        return rec

    async def reconcile_contract(self, record: ContractRecord, actor: str) -> ReconciliationRecord | None:
        """An operator's reconcile request: the contract's actual run since it started (its BOOT
        entry, engine state and first inputs) against the engine's projection over the same span.
        None if the device's journal holds no run of this contract yet."""
        entries = self.store.journal.entries(record.device, 0)
        boots = [(i, b) for i, b in enumerate(_boot(e) for e in entries)
                 if b is not None and b.hash == record.content_hash]
        if not boots:
            return None
        at, boot = boots[-1]
        run = [e for e in entries[at + 1:] if belongs_to(e, record.contract)]
        first = next((b for b in (_input(e) for e in run) if b is not None), None)
        initial = {n: v[0] for n, v in first.values.items()} if first else {}
        inputs = ProjectionInputs(contract_id=record.id, start_ms=boot.t0_ms,
                                  state=boot.state.to_mapping(), initial=initial,
                                  from_seq=entries[at].seq)
        contract = parse_contract(record.document)
        now = self.clock()
        projection = self.projector.project(record, inputs)
        report = reconcile(contract, projection, run, inputs.start_ms, now)
        return await self._record(contract, record, report, now, actor, {"requested_by": actor})

    async def _record(self, contract: Contract, record: ContractRecord, report: Report,
                      now: EpochMs, actor: str, requested: dict[str, Any]) -> ReconciliationRecord:
        """Act on a divergent report, then store and audit the reconciliation."""
        decision = await self._act(contract, record, report) if report.divergent else None
        action = decision.action.value if decision else "none"
        rec = ReconciliationRecord(device=record.device, contract=record.contract,
                                   version=record.version, ts_ms=now,
                                   report={**report.to_json(),
                                           "decision": _decision_json(decision), **requested},
                                   divergent=report.divergent, action=action)
        rec_id = self.store.reconciliations.add(rec)
        self.audit(actor, AuditAction.RECONCILE, record.device, record.id,
                   "; ".join(report.reasons) or "within tolerance", action=action,
                   reconciliation=rec_id, **({"requested": True} if requested else {}))
        return ReconciliationRecord(**{**rec.__dict__, "id": rec_id})

    async def _act(self, contract: Contract, record: ContractRecord,
                   report: Report) -> Decision | None:
        category, reason = report.category or FailureCategory.RUNTIME, "; ".join(report.reasons)
        return await self.replanner.apply_policy(contract, record, category, reason,
                                                 report.actual_step_index)


@dataclass(kw_only=True)
class _Fold:
    """A projected device's outage folded as its journal arrives: entries from_seq+1 ..
    next_seq-1, in order, each once."""

    from_seq: int
    next_seq: int
    actual: Actual
    contract: str  # the projected contract's id: a device may run several (entries are tagged)


def _decision_json(d: Decision | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"action": d.action.value, "category": d.category.value, "reason": d.reason,
            "device": d.device, "new_version": d.document["version"] if d.document else None}


def _boot(e: Entry) -> BootBody | None:
    """The BOOT record of `e`, or None (another kind, or a body that does not decode)."""
    body = _decoded(e) if e.kind is EntryKind.BOOT else None
    return body if isinstance(body, BootBody) else None


def _input(e: Entry) -> InputBody | None:
    body = _decoded(e) if e.kind is EntryKind.INPUT else None
    return body if isinstance(body, InputBody) else None


def _decoded(e: Entry) -> object:
    try:
        return decode_entry(e)
    except BodyError:
        return None  # device input: a malformed body is no fact about the run
