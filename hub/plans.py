"""Plans: what applying a snapshot would do to each device, computed without changing anything.

Rules:
- A plan reads the store and writes nothing: no contract, no audit row, no desired state (tested:
  the database is byte-for-byte what it was). Applying is the rollout's job (the next issue).
- Per device the snapshot targets (narrowed by the request's own selector): the contract it runs
  now, as it reports it (hub/reports.py rules); the contract it would get (the next version of
  `{design}.{device}`, or the one it runs when nothing changes); the fields that change
  (contracts.fleet_compile.field_diff); and whether it is eligible now. Ineligible reasons, all
  listed: `offline` (projected or never heard), `fault`, `tripped` (a contract of it is latched in
  safe state), `write_conflict` (its write points overlap another contract in force on the device,
  or another contract of the same plan), `binding_missing`, `invalid` (every issue named),
  `endpoint_missing` (a point names an endpoint the device's registered ones do not include; a
  device with none registered is unknown, not ineligible: hub/device_endpoints.py).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from contracts.fleet_binding import Selector
from contracts.fleet_compile import comparable_document, field_diff
from contracts.fleet_snapshot import Snapshot
from contracts.schema import Contract
from contracts.schema_parse import parse_contract
from contracts.schema_serialize import to_mapping
from hub.drift import OFFLINE_STATES
from hub.fleet import Desired, Fleet
from hub.admission import write_conflicts
from hub.device_endpoints import missing
from hub.states import ContractStatus, DeviceState
from hub.store.fleet import ContractHead, DeviceHead


@dataclass(frozen=True, kw_only=True)
class _Facts:
    """What the store says, read once per plan."""

    devices: Mapping[str, DeviceHead]
    heads: Mapping[str, ContractHead]
    by_device: Mapping[str, list[ContractHead]]
    highest: Mapping[str, int]


class Planner:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._contracts: dict[str, Contract] = {}  # content hash -> parsed (records never change)
        self._documents: dict[str, dict[str, Any]] = {}

    def plan(self, sid: str, narrow: Selector | None = None, *,
             documents: bool = False) -> dict[str, Any]:
        """The plan of snapshot `sid` (raises NotFound) over the devices it targets; with
        `documents`, each would-get contract in full, valid from now (what an apply would sign)."""
        snap = self.fleet.snapshot(sid)
        self.fleet.reports.refresh()
        facts = self._facts()
        self._load_documents(facts)
        rows = []
        for t in self.fleet.targets(narrow):
            wants = self.fleet.desired(sid, t)
            for want in wants:
                row = self._row(want, wants, facts)
                if documents and want.compiled is not None and want.design is not None:
                    row["would_get"]["document"] = self._document_now(snap, want, row)
                rows.append(row)
        eligible = sum(1 for r in rows if r["eligible"] and r["action"] != "unchanged")
        return {"snapshot": sid, "target": snap.target.to_mapping(), "devices": rows,
                "summary": {"devices": len({r["device"] for r in rows}), "contracts": len(rows),
                            "eligible": eligible,
                            "unchanged": sum(1 for r in rows if r["action"] == "unchanged"),
                            "ineligible": sum(1 for r in rows if not r["eligible"])}}

    def _document_now(self, snap: Snapshot, want: Desired, row: Mapping[str, Any]) -> dict[str, Any]:
        assert want.compiled is not None and want.design is not None
        design = snap.design(want.design.partition("@")[0])
        assert design is not None
        now = self.fleet.clock()
        version = int(row["would_get"]["contract"].rpartition("@")[2])
        c = replace(want.compiled, version=version, valid_from=now,
                    valid_until=now + design.validity_s * 1000)
        return to_mapping(c)

    def _facts(self) -> _Facts:
        store = self.fleet.store
        _, heads = store.fleet.contract_heads()
        by_device: dict[str, list[ContractHead]] = {}
        highest: dict[str, int] = {}
        for h in heads.values():
            by_device.setdefault(h.device, []).append(h)
            highest[h.contract] = max(highest.get(h.contract, 0), h.version)
        return _Facts(devices={d.id: d for d in store.fleet.device_heads()}, heads=heads,
                      by_device=by_device, highest=highest)

    def _row(self, want: Desired, siblings: list[Desired], facts: _Facts) -> dict[str, Any]:
        dev = facts.devices.get(want.device)
        state = dev.state if dev is not None else DeviceState.UNKNOWN
        running = facts.heads.get(dev.running) if dev is not None and dev.running else None
        mine = [h for h in facts.by_device.get(want.device, ()) if h.contract == want.contract
                and h.status.claims_points]
        current = running if running is not None and running.contract == want.contract \
            else (max(mine, key=lambda h: h.version) if mine else None)
        before = self._document(current) if current is not None else None
        changes = field_diff(before, want.document) if want.document is not None and before else []
        action = ("invalid" if want.compiled is None else "install" if current is None
                  else "update" if changes else "unchanged")
        version = (current.version if action == "unchanged" and current else
                   facts.highest.get(want.contract or "", 0) + 1)
        reasons = self._ineligible(want, siblings, state, facts)
        return {
            "device": want.device, "site": dev.site if dev else None, "state": state.value,
            "contract": want.contract, "design": want.design, "binding": want.binding,
            "current": {"contract": dev.running if dev else None,
                        "status": running.status.value if running else None,
                        "same_contract": current.id if current else None},
            "would_get": None if want.compiled is None else
            {"contract": f"{want.contract}@{version}", "digest": want.digest},
            "action": action, "changes": changes,
            "eligible": not reasons, "ineligible": reasons,
        }

    def _ineligible(self, want: Desired, siblings: list[Desired], state: DeviceState,
                    facts: _Facts) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if state in OFFLINE_STATES:
            out.append({"reason": "offline", "detail": f"device is {state.value}"})
        if state is DeviceState.FAULT:
            out.append({"reason": "fault", "detail": "device is in FAULT; an admin must reset it"})
        tripped = [h.id for h in facts.by_device.get(want.device, ())
                   if h.status is ContractStatus.TRIPPED]
        if tripped:
            out.append({"reason": "tripped", "detail": f"latched in safe state: {', '.join(tripped)}"})
        if want.binding is None and want.compiled is None:
            out.append({"reason": "binding_missing",
                        "detail": "; ".join(str(i) for i in want.issues) or "no binding"})
        elif want.compiled is None:
            out.append({"reason": "invalid", "detail": "; ".join(str(i) for i in want.issues[:20]),
                        "issues": [_issue(i) for i in want.issues]})
        else:
            out += self._conflicts(want.compiled, siblings, facts)
            out += self._missing_endpoints(want.compiled)
        return out

    def _missing_endpoints(self, new: Contract) -> list[dict[str, Any]]:
        rec = self.fleet.registry.get(new.device)
        return [{"reason": "endpoint_missing", "point": point, "endpoint": endpoint,
                 "detail": f"point {point!r} is on endpoint {endpoint!r}, which the device does "
                           "not have"} for point, endpoint in missing(new, rec.endpoints if rec else ())]

    def _conflicts(self, new: Contract, siblings: list[Desired],
                   facts: _Facts) -> list[dict[str, Any]]:
        others = [self._contract(h) for h in facts.by_device.get(new.device, ())
                  if h.status.claims_points and h.contract != new.contract]  # a newer version
        # of the same contract replaces it, never conflicts (hub.admission.write_conflicts)
        others += [s.compiled for s in siblings if s.compiled is not None and s.compiled is not new]
        found = write_conflicts(new, others)
        return [{"reason": "write_conflict", "detail": f"write point {o.point!r} overlaps "
                 f"{o.other_point!r} of {o.other}"} for o in found]

    def _load_documents(self, facts: _Facts) -> None:
        """Every record a device runs, read in one query per 500 (not one each) and kept: records
        never change, so each is read once per hub process."""
        wanted = [h for h in facts.heads.values() if h.content_hash not in self._documents
                  and h.status.claims_points]
        for start in range(0, len(wanted), 500):
            part = wanted[start:start + 500]
            for h, doc in zip(part, self.fleet.store.fleet.documents([h.id for h in part])):
                self._documents[h.content_hash] = comparable_document(doc)

    def _document(self, head: ContractHead) -> dict[str, Any]:
        if head.content_hash not in self._documents:
            doc = self.fleet.store.contracts.get(head.id).document
            self._documents[head.content_hash] = comparable_document(doc)
        return self._documents[head.content_hash]

    def _contract(self, head: ContractHead) -> Contract:
        if head.content_hash not in self._contracts:
            doc = self.fleet.store.contracts.get(head.id).document
            self._contracts[head.content_hash] = parse_contract(doc)
        return self._contracts[head.content_hash]


def _issue(i: Any) -> dict[str, Any]:
    return {"design": i.design, "binding": i.binding, "device": i.device, "origin": i.origin,
            "field": i.field, "reason": i.reason}
