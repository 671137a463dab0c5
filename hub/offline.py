"""Offline devices: projection while they are gone, reconciliation and replanning when they return.

Projection: when a device goes `projected`, the hub runs the contract's engine forward from the last
engine state the device reported (telemetry carries it) on the contract's `expect` model. The
projection's inputs are stored with the device, so the same projection can be recomputed exactly
(the engine is pure) when the device comes back — we never trust a stale blob for a decision.

Reconciliation: once the journal has caught up, the actual entries since the device went offline
replace the projection; hub/reconcile.py measures the divergence; hub/planner.py applies the policy
for the failure category; the decision is recorded and audited.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.chain import Entry, EntryKind
from contracts.journal_events import BodyError, BootBody, InputBody, decode_entry
from contracts.codec import canonical_dumps
from contracts.engine import EngineState
from contracts.projection import Projection, ProjectionPoint, confidence, project
from contracts.schema import Contract
from contracts.schema_parse import parse_contract
from contracts.types import EpochMs, Value
from hub.audit import AuditAction, AuditEntry, Outcome
from hub.alarms import AlarmKind
from hub.policy import FailureCategory, Policy, PolicyAction, RetryConfig
from hub.lineage import after_retry, source_version
from hub.planner import Decision, decide
from hub.reconcile import (Actual, Report, actual_from_entries, fold_entries, reconcile,
                           reconcile_actual)
from hub.service import HubService, RequestRefused
from hub.states import ContractStatus
from hub.store import ContractRecord, DeviceRecord, HubStore, NotFound, ReconciliationRecord

log = logging.getLogger("fieldpact.hub.offline")

HORIZON_MS = 24 * 3600 * 1000
"""Project at most a day ahead: past that the confidence is near zero and the contract will have
expired or been replanned anyway."""

SAMPLE_MS = 10_000
"""Projection samples every 10 s: fine enough for an operator's chart, ~8,640 points a day."""

PLANNER = "planner"


@dataclass(frozen=True, kw_only=True)
class ProjectionInputs:
    """Everything project() needs, stored so the projection can be recomputed exactly."""

    contract_id: str
    start_ms: EpochMs
    state: Mapping[str, Any] | None
    initial: Mapping[str, Value]
    from_seq: int

    def to_json(self) -> dict[str, Any]:
        return {"contract_id": self.contract_id, "start_ms": self.start_ms, "state": self.state,
                "initial": dict(self.initial), "from_seq": self.from_seq}


def point_json(p: ProjectionPoint) -> dict[str, Any]:
    return {"ts_ms": p.ts_ms, "step": p.step, "mode": p.mode, "outputs": dict(p.outputs),
            "modelled": dict(p.modelled)}


def current_point(points: list[dict[str, Any]], now_ms: EpochMs) -> dict[str, Any] | None:
    """The projected sample in force at `now_ms` (the last one at or before it)."""
    found = None
    for p in points:
        if p["ts_ms"] > now_ms:
            break
        found = p
    return found


class OfflineManager:
    def __init__(self, store: HubStore, service: HubService, policies: Mapping[FailureCategory, Policy],
                 clock: Callable[[], EpochMs], retry: RetryConfig = RetryConfig()) -> None:
        self.store, self.service, self.policies, self.clock = store, service, policies, clock
        self.retry = retry
        self._points: dict[str, list[dict[str, Any]]] = {}
        # The projection of each projected device, by its exact inputs: reconciling a day-long
        # outage reuses it instead of running the engine over the day again (it is pure, so the
        # result would be the same; after a restart it is recomputed from the stored inputs).
        self._projections: dict[str, tuple[bytes, Projection]] = {}
        self._folds: dict[str, _Fold] = {}
        self.healthy_since: Callable[[str], EpochMs | None] = lambda device: None
        """Since when the device's telemetry has shown every input healthy (set by HubSync)."""

    def confidence_at(self, blob: Mapping[str, Any], now_ms: EpochMs) -> float:
        """How much to trust the projection `now_ms - start` into the outage (decays with age)."""
        record = self.store.contracts.get(blob["inputs"]["contract_id"])
        return confidence(parse_contract(record.document), max(0, now_ms - blob["inputs"]["start_ms"]))

    def points(self, device: str, blob: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The projection samples for a projected device; recomputed from the stored inputs after
        a hub restart (the engine is pure, so the result is the same)."""
        if device not in self._points:
            inputs = ProjectionInputs(**blob["inputs"])
            projection = self._project(self.store.contracts.get(inputs.contract_id), inputs, device)
            self._points[device] = [point_json(p) for p in projection.points]
        return self._points[device]

    def running_contract(self, device: DeviceRecord) -> ContractRecord | None:
        """The contract the device reported, else the newest one claiming its points."""
        if device.contract and device.version:
            for r in self.store.contracts.find(device=device.id):
                if r.contract == device.contract and r.version == device.version:
                    return r
        claiming = [r for r in self.store.contracts.find(device=device.id) if r.status.claims_points]
        return max(claiming, key=lambda r: r.version, default=None)

    # -- projection -----------------------------------------------------------------------
    def start_projection(self, device: DeviceRecord, live: Mapping[str, Any] | None,
                         from_seq: int) -> dict[str, Any] | None:
        record = self.running_contract(device)
        if record is None:
            return None
        now = self.clock()
        inputs = ProjectionInputs(
            contract_id=record.id, start_ms=int(live["ts_ms"]) if live else now,
            state=live.get("state") if live else None,
            initial=dict(live.get("values", {})) if live else {}, from_seq=from_seq)
        projection = self._project(record, inputs, device.id)
        self._points[device.id] = [point_json(p) for p in projection.points]
        self._folds[device.id] = _Fold(from_seq=from_seq, next_seq=from_seq + 1, actual=Actual())
        blob = {"source": "projection", "inputs": inputs.to_json(), "computed_ms": now,
                "confidence": projection.confidence,
                "transitions": [_event_json(e) for e in projection.transitions][:200]}
        log.info("projection_started device=%s contract=%s from_ms=%s confidence=%.2f",
                 device.id, record.id, inputs.start_ms, projection.confidence)
        return blob

    def fold(self, device: str, entries: Sequence[Entry]) -> None:
        """Fold a projected device's newly stored entries (seq order) into its outage's actual
        history, so the reconciliation need not read and decode the whole outage back. A batch
        that does not follow the last one folded drops the fold: the journal is read instead."""
        f = self._folds.get(device)
        if f is None or not entries:
            return
        if entries[0].seq != f.next_seq or entries[-1].seq - entries[0].seq + 1 != len(entries):
            del self._folds[device]  # not contiguous with the fold, or a declared gap inside
            return
        fold_entries(f.actual, entries)
        f.next_seq = entries[-1].seq + 1

    def forget_folds(self) -> None:
        """The store rolled back entries that were folded: read the journal instead."""
        self._folds.clear()

    def _actual(self, device: DeviceRecord, from_seq: int) -> Actual:
        """The outage's actual history: the fold if it holds exactly the stored entries after
        `from_seq` (all of them, through the acked seq), else folded from the journal."""
        f = self._folds.pop(device.id, None)
        if f is not None and f.from_seq == from_seq and f.next_seq == device.acked_seq + 1:
            return f.actual
        return actual_from_entries(self.store.journal.entries(device.id, from_seq + 1))

    def _project(self, record: ContractRecord, inputs: ProjectionInputs,
                 device: str | None = None) -> Projection:
        """The engine run forward on `inputs`; for a `device`, remembered by its exact inputs."""
        key = record.content_hash.encode() + canonical_dumps(inputs.to_json())
        cached = self._projections.get(device) if device is not None else None
        if cached is not None and cached[0] == key:
            return cached[1]
        projection = self._run_projection(record, inputs)
        if device is not None:
            self._projections[device] = (key, projection)
        return projection

    def _run_projection(self, record: ContractRecord, inputs: ProjectionInputs) -> Projection:
        contract = parse_contract(record.document)
        state = EngineState.from_mapping(inputs.state) if inputs.state else None
        end = min(contract.valid_until, inputs.start_ms + HORIZON_MS)
        return project(contract, state, inputs.start_ms, max(end, inputs.start_ms + 1),
                       initial=inputs.initial, every_ms=SAMPLE_MS)

    # -- reconciliation -------------------------------------------------------------------
    async def reconcile_device(self, device: DeviceRecord,
                               actor: str = "sync") -> ReconciliationRecord | None:
        """Measure divergence for a device whose journal has caught up, record it, and act.
        None when there was no projection to compare with."""
        blob = device.projection if isinstance(device.projection, Mapping) else None
        now = self.clock()
        if blob is None or blob.get("source") != "projection":
            return None  # the device was not offline (first birth, reboot): nothing to compare
        inputs = blob["inputs"]
        record = self.store.contracts.get(inputs["contract_id"])
        contract = parse_contract(record.document)
        projection = self._project(record, ProjectionInputs(**inputs), device.id)
        self._points.pop(device.id, None)
        self._projections.pop(device.id, None)
        actual = self._actual(device, inputs["from_seq"])
        report = reconcile_actual(contract, projection, actual, inputs["start_ms"], now)
        decision = await self._act(contract, record, report) if report.divergent else None
        action = decision.action.value if decision else "none"
        rec = ReconciliationRecord(device=device.id, contract=record.contract, version=record.version,
                                   ts_ms=now, report={**report.to_json(), "decision": _decision_json(decision)},
                                   divergent=report.divergent, action=action)
        rec_id = self.store.reconciliations.add(rec)
        self._audit(actor, AuditAction.RECONCILE, device.id, record.id,
                    "; ".join(report.reasons) or "within tolerance", action=action,
                    reconciliation=rec_id)
        log.info("reconciled device=%s contract=%s divergent=%s action=%s reasons=%s",
                 device.id, record.id, report.divergent, action, list(report.reasons))
        return ReconciliationRecord(**{**rec.__dict__, "id": rec_id})

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
        run = entries[at + 1:]
        first = next((b for b in (_input(e) for e in run) if b is not None), None)
        initial = {n: v[0] for n, v in first.values.items()} if first else {}
        inputs = ProjectionInputs(contract_id=record.id, start_ms=boot.t0_ms,
                                  state=boot.state.to_mapping(), initial=initial,
                                  from_seq=entries[at].seq)
        contract = parse_contract(record.document)
        now = self.clock()
        projection = self._project(record, inputs)
        report = reconcile(contract, projection, run, inputs.start_ms, now)
        decision = await self._act(contract, record, report) if report.divergent else None
        action = decision.action.value if decision else "none"
        rec = ReconciliationRecord(device=record.device, contract=record.contract,
                                   version=record.version, ts_ms=now,
                                   report={**report.to_json(), "decision": _decision_json(decision),
                                           "requested_by": actor},
                                   divergent=report.divergent, action=action)
        rec_id = self.store.reconciliations.add(rec)
        self._audit(actor, AuditAction.RECONCILE, record.device, record.id,
                    "; ".join(report.reasons) or "within tolerance", action=action,
                    reconciliation=rec_id, requested=True)
        return ReconciliationRecord(**{**rec.__dict__, "id": rec_id})

    async def _act(self, contract: Contract, record: ContractRecord,
                   report: Report) -> Decision | None:
        category = report.category or FailureCategory.RUNTIME
        return await self.apply_policy(contract, record, category, "; ".join(report.reasons),
                                       report.actual_step_index)

    async def apply_policy(self, contract: Contract, record: ContractRecord,
                           category: FailureCategory, reason: str,
                           actual_step: int | None) -> Decision | None:
        """Decide and carry out the policy for `record` (hub/planner.py). The decision is built
        from the version the device runs, never an older one (hub/lineage.py); None when the
        trigger named a stale version, so nothing is done. Raises nothing a caller must handle:
        a refused action becomes an alarm."""
        source = self._source(record)
        if source is None:
            runs = self.store.devices.get(record.device)
            self._audit(PLANNER, AuditAction.REPLAN, record.device, record.id,
                        f"{reason}; not acted on: {record.id} is not the newest version or not "
                        f"the one the device runs ({runs.contract}@{runs.version})",
                        action="none", category=category.value)
            log.warning("replan_stale contract=%s device=%s", record.id, record.device)
            return None
        step = _same_step(contract, parse_contract(source.document), actual_step)
        return await self._decide_and_act(source, category, reason, step)

    async def _decide_and_act(self, source: ContractRecord, category: FailureCategory,
                              reason: str, step: int | None) -> Decision:
        lineage = source.lineage or source.id
        budget = self.store.lineages.budget(lineage)
        highest = self.store.contracts.highest_version(source.contract) or source.version
        capable = [d.id for d in self.store.devices.find() if d.site == source.site]
        decision = decide(contract=parse_contract(source.document), category=category,
                          reason=reason, policies=self.policies, budget=budget,
                          next_version=highest + 1, actual_step=step, now_ms=self.clock(),
                          capable=capable, retry=self.retry,
                          healthy_since_ms=self.healthy_since(source.device))
        waiting = dict(self.store.lineages.pending_retries()).get(lineage)
        if decision.action is PolicyAction.WAIT:
            pending = {"cid": source.id, "category": category.value, "reason": reason,
                       "step": step}
            if pending != waiting:  # decided again every tick: write (fsync) only a change
                self.store.lineages.set_pending(lineage, pending)
            if waiting is not None:
                return decision  # still waiting: audited when the wait began
        elif waiting is not None:
            self.store.lineages.set_pending(lineage, None)
        await self._execute(decision, source, lineage)
        self._audit(PLANNER, AuditAction.REPLAN, source.device, source.id, decision.reason,
                    action=decision.action.value, category=category.value, lineage=lineage,
                    retries=decision.retries,
                    new_version=decision.document["version"] if decision.document else None)
        return decision

    def _source(self, record: ContractRecord) -> ContractRecord | None:
        """The version to act on for a trigger naming `record` (hub/lineage.source_version)."""
        device = self.store.devices.get(record.device)
        same = self.store.contracts.find(device=record.device, contract=record.contract)
        running = device.version if device.contract == record.contract else None
        active = max((r.version for r in same if r.status.claims_points), default=None)
        version = source_version(record=record.version, running=running, active=active)
        return next((r for r in same if r.version == version), None)

    async def retry_pending(self) -> None:
        """Decide again every deferred retry (backoff or settle time not yet over). One whose
        contract was resumed, replaced or ended meanwhile is dropped."""
        for lineage, p in self.store.lineages.pending_retries():
            try:
                record = self.store.contracts.get(p["cid"])
            except NotFound:
                self.store.lineages.set_pending(lineage, None)
                continue
            category = FailureCategory(p["category"])
            tripped = record.status is ContractStatus.TRIPPED
            if (category is FailureCategory.TRIP and not tripped) or \
                    (self.store.contracts.highest_version(record.contract) or 0) > record.version:
                self.store.lineages.set_pending(lineage, None)
                continue
            await self.apply_policy(parse_contract(record.document), record, category,
                                    p["reason"], p.get("step"))

    async def _execute(self, decision: Decision, record: ContractRecord, lineage: str) -> None:
        try:
            if decision.document is not None:
                labels = {**decision.document.get("labels", {}), "lineage": lineage}
                # Counted before the attempt: a re-issue that is refused or not published still
                # spends the budget, so automation stays bounded whatever fails.
                self.store.lineages.save_budget(after_retry(self.store.lineages.budget(lineage), self.clock(),
                                                   self.retry))
                new = await self.service.submit_contract({**decision.document, "labels": labels},
                                                         PLANNER, lineage=lineage)
                log.info("replan_pushed from=%s to=%s device=%s lineage=%s", record.id, new.id,
                         new.device, lineage)
            elif decision.action is PolicyAction.HOLD and record.status is ContractStatus.TRIPPED:
                log.info("trip_held contract=%s device=%s", record.id, record.device)
            elif decision.action is PolicyAction.HOLD and not record.status.terminal:
                await self.service.hold(record.id, PLANNER, decision.reason)
            elif decision.action is PolicyAction.ABORT and not record.status.terminal:
                await self.service.abort(record.id, PLANNER, decision.reason)
            elif decision.action is PolicyAction.ESCALATE:
                self.store.alarms.raise_(record.device, AlarmKind.ESCALATED, decision.reason,
                                       self.clock())
        except RequestRefused as exc:
            self.store.alarms.raise_(record.device, AlarmKind.REPLAN_REFUSED, str(exc), self.clock())
            log.warning("replan_refused contract=%s reason=%s", record.id, exc)

    def _audit(self, actor: str, what: AuditAction, device: str, contract: str, reason: str,
               **detail: Any) -> None:
        self.store.audit.add(AuditEntry(ts_ms=self.clock(), actor=actor, action=what,
                                        outcome=Outcome.OK, device=device, contract=contract,
                                        reason=reason, detail=detail))


@dataclass(kw_only=True)
class _Fold:
    """A projected device's outage folded as its journal arrives: entries from_seq+1 ..
    next_seq-1, in order, each once."""

    from_seq: int
    next_seq: int
    actual: Actual


def _same_step(old: Contract, new: Contract, index: int | None) -> int | None:
    """The index in `new` of step `index` of `old` (the same name), or None."""
    if index is None or not 0 <= index < len(old.steps):
        return None
    name = old.steps[index].name
    return next((i for i, s in enumerate(new.steps) if s.name == name), None)


def _event_json(e: Any) -> dict[str, Any]:
    return {"kind": e.kind.value, "ts_ms": e.ts_ms, **{k: v for k, v in e.fields}}


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
