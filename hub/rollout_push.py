"""Issuing a deployment's contracts, exactly once each (issue 13: "a push that already happened is
not repeated; a version never issued twice").

Rules:
- Every push goes through HubService.submit_contract (checked, signed, stored, published,
  audited) with actor `deployment:<id>`: the snapshot's compiled contract for the device, version
  = highest issued + 1, valid from now, with the `rollout` key (interface I1: the deployment, the
  health window, the known-good content hash); a rollback's push is the known-good document
  again, at the next version, without it.
- Write-ahead: the version is reserved on the device's execution row (`issued`, or `restore` for
  a rollback) and committed BEFORE the push; the push's outcome is committed with the step's
  record after it. After a crash between the two the contract store says what happened: the
  record exists and was published (PUSHED or later) — nothing is sent again; it exists but is
  still SUBMITTED (stored, never published) — its signed bytes are published as they are; it does
  not exist — it is submitted at the reserved version. So a retry or a resume never re-pushes
  and never issues a second version.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from contracts.schema import Rollout
from contracts.schema_parse import parse_contract
from contracts.schema_serialize import to_mapping
from contracts.types import EpochMs
from hub.fleet import Fleet
from hub.refusals import PublishFailed
from hub.service import HubService
from hub.states import ContractEvent, ContractStatus
from hub.store import NotFound, contract_id
from hub.store.deployments import DeploymentRecord, ExecutionRecord

class Issuer:
    """Pushes one device's contract of a deployment (forward or back), idempotently."""

    def __init__(self, service: HubService, fleet: Fleet, clock: Callable[[], EpochMs]) -> None:
        self.service, self.fleet, self.clock = service, fleet, clock
        self.store = service.store

    def reserve(self, contract: str) -> str:
        """The next version of `contract` as an id ("tank-fill.d1@4"), to be written ahead."""
        return contract_id(contract, (self.store.contracts.highest_version(contract) or 0) + 1)

    def forward_document(self, dep: DeploymentRecord, ex: ExecutionRecord,
                         version: int) -> dict[str, Any]:
        """The snapshot's contract for `ex.device` at `version`, valid from now, with I1."""
        target = self.fleet.target(ex.device)
        want = next(d for d in self.fleet.desired(dep.snapshot, target)
                    if d.contract == ex.contract and d.compiled is not None)
        assert want.compiled is not None and want.design is not None
        design = self.fleet.snapshot(dep.snapshot).design(want.design.partition("@")[0])
        assert design is not None
        now = self.clock()
        window_ms = int(float(dep.health.get("window_s", 300)) * 1000)
        known = str(ex.known_good["hash"]) if ex.known_good else None
        c = replace(want.compiled, version=version, valid_from=now,
                    valid_until=now + design.validity_s * 1000,
                    rollout=Rollout(deployment=dep.id, health_window_ms=window_ms,
                                    known_good=known))
        return to_mapping(c)

    def restore_document(self, ex: ExecutionRecord, version: int) -> dict[str, Any]:
        """The known-good contract again, at `version`, valid from now for as long as it was."""
        assert ex.known_good is not None
        old = parse_contract(self.store.contracts.get(str(ex.known_good["contract"])).document)
        now = self.clock()
        span = max(60_000, old.valid_until - old.valid_from)
        return to_mapping(replace(old, version=version, valid_from=now, valid_until=now + span,
                                  rollout=None))

    async def issue(self, reserved: str, document: Callable[[int], Mapping[str, Any]],
                    actor: str, *, republish: bool = False) -> tuple[str, str]:
        """Make sure contract `reserved` was issued and published; (its id, content hash).
        `republish`: publish a record still PUSHED again (its device was offline). Raises what
        HubService.submit_contract raises (then retry later)."""
        try:
            record = self.store.contracts.get(reserved)
        except NotFound:
            version = int(reserved.rpartition("@")[2])
            record = await self.service.submit_contract(document(version), actor)
            return record.id, record.content_hash
        if record.status is ContractStatus.SUBMITTED or \
                (republish and record.status is ContractStatus.PUSHED):
            await self._publish(record.site, record.device, record.signed, reserved)
            self.store.contracts.apply_event(record.id, ContractEvent.PUSH, self.clock(),
                                             f"by {actor} (published again: "
                                             f"{'device back' if republish else 'after a restart'})")
        return record.id, record.content_hash


    async def _publish(self, site: str, device: str, signed: bytes, cid: str) -> None:
        try:
            await self.service.publisher.push_contract(site, device, signed)
        except Exception as exc:  # any transport failure: the step fails, a retry publishes
            raise PublishFailed(f"contract {cid} stored but not pushed: {exc}") from exc
