"""Carrying out the planner's decisions: which version to act on, the retry budget, the action.

Rules:
- A trigger (a divergent reconciliation, a failed or tripped contract) names a contract record;
  the decision is built from the version the device runs, never an older one
  (hub/lineage.source_version); a trigger naming a stale version is audited and not acted on.
- hub/planner.py decides (pure); this module persists what the decision needs: the lineage's
  retry budget, spent *before* a re-issue is attempted so automation stays bounded whatever
  fails, and a deferred retry (WAIT) written only when it changes, then decided again by
  `retry_pending` until it can run or no longer applies.
- A refused action (the hub's own service refusing the re-issue, hold or abort) becomes an alarm;
  nothing here raises to the caller.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from contracts.schema import Contract
from contracts.schema_parse import parse_contract
from contracts.types import EpochMs
from hub.alarms import AlarmKind
from hub.audit import AuditAction, DecisionAudit
from hub.lineage import after_retry, source_version
from hub.planner import Decision, decide
from hub.policy import FailureCategory, Policy, PolicyAction, RetryConfig
from hub.refusals import RequestRefused
from hub.service import HubService
from hub.states import ContractStatus
from hub.store import ContractRecord, HubStore, NotFound

log = logging.getLogger("fieldpact.hub.offline")

PLANNER = "planner"
"""The actor the audit trail names for the planner's actions."""


class Replanner:
    def __init__(self, store: HubStore, service: HubService,
                 policies: Mapping[FailureCategory, Policy], clock: Callable[[], EpochMs],
                 retry: RetryConfig, audit: DecisionAudit,
                 healthy_since: Callable[[str], EpochMs | None]) -> None:
        self.store, self.service, self.policies, self.clock = store, service, policies, clock
        self.retry, self.audit, self.healthy_since = retry, audit, healthy_since

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
            self.audit(PLANNER, AuditAction.REPLAN, record.device, record.id,
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
        self.audit(PLANNER, AuditAction.REPLAN, source.device, source.id, decision.reason,
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
                await self._reissue(decision.document, record, lineage)
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
            self.store.alarms.raise_(record.device, AlarmKind.REPLAN_REFUSED, str(exc),
                                     self.clock())
            log.warning("replan_refused contract=%s reason=%s", record.id, exc)

    async def _reissue(self, document: Mapping[str, Any], record: ContractRecord,
                       lineage: str) -> None:
        labels = {**document.get("labels", {}), "lineage": lineage}
        # Counted before the attempt: a re-issue that is refused or not published still spends
        # the budget, so automation stays bounded whatever fails.
        self.store.lineages.save_budget(after_retry(self.store.lineages.budget(lineage),
                                                    self.clock(), self.retry))
        new = await self.service.submit_contract({**document, "labels": labels}, PLANNER,
                                                 lineage=lineage)
        log.info("replan_pushed from=%s to=%s device=%s lineage=%s", record.id, new.id,
                 new.device, lineage)


def _same_step(old: Contract, new: Contract, index: int | None) -> int | None:
    """The index in `new` of step `index` of `old` (the same name), or None."""
    if index is None or not 0 <= index < len(old.steps):
        return None
    name = old.steps[index].name
    return next((i for i, s in enumerate(new.steps) if s.name == name), None)
