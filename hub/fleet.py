"""Fleet configuration on the hub: designs, bindings and snapshots stored, and each device's
desired contracts compiled from its desired snapshot.

Rules:
- Designs and binding revisions are checked (contracts/fleet_design.py, fleet_binding.py) before
  they are stored, and never change once stored; a design version is stored once (409 after).
- A snapshot is made from stored documents: the designs asked for (`{name: version}`, latest when
  left out) and every binding of them (latest revisions, or those named), plus a target selector.
  Its id is the hash of its canonical encoding (contracts/fleet_snapshot.py): making it again from
  the same inputs returns the same snapshot, byte for byte, and writes nothing.
- Who made a snapshot, when, and from which design versions and binding revisions is in its record
  (`source`) and in the audit trail.
- Compiled contracts are cached by (snapshot id, device, site, labels): a snapshot never changes,
  so only a registry change (labels, site) compiles again. A label binding is compiled once per
  site and renamed for each device it places.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts.errors import FleetInvalid, FleetIssue
from contracts.fleet_binding import Binding, Selector, Target, parse_binding, parse_selector
from contracts.fleet_compile import (comparable_document, compile_contract, contract_name,
                                     document_digest, renamed)
from contracts.fleet_design import Design, parse_design
from contracts.fleet_snapshot import (Snapshot, assignments, build_snapshot, decode_snapshot,
                                      encode_snapshot, snapshot_id)
from contracts.schema import Contract
from contracts.schema_serialize import to_mapping
from contracts.types import EpochMs
from hub.alarms import AlarmKind
from hub.audit import AuditAction, AuditEntry, Outcome, log_entry
from hub.registry import DeviceRegistry
from hub.reports import ReportedContracts
from hub.store import HubStore, NotFound
from hub.store.fleet import SnapshotRecord

COMPILE_EPOCH_MS = 0
"""Desired contracts are compiled at a fixed time and version 1: what they do (config_digest,
field_diff) does not depend on either, and a fixed input keeps them cacheable."""

MAX_CACHED = 100_000
"""Compiled (snapshot, device, design) entries kept; 1,000 devices x a few designs x a few
snapshots in use fit many times over. Past it the cache starts again (it is only a cache)."""


@dataclass(frozen=True, kw_only=True)
class Desired:
    """One contract a snapshot gives one device: compiled, or the issues that stop it."""

    device: str
    contract: str | None        # the compiled contract's id (None: no design applies)
    design: str | None          # "tank-fill@3"
    binding: str | None
    compiled: Contract | None = None
    digest: str | None = None
    document: Mapping[str, Any] | None = None  # `comparable` form, for field diffs
    issues: tuple[FleetIssue, ...] = ()


class Fleet:
    """The API side's fleet configuration (one per app, over the API's store connection)."""

    def __init__(self, store: HubStore, registry: DeviceRegistry, clock: Callable[[], EpochMs]) -> None:
        self.store, self.registry, self.clock = store, registry, clock
        self.reports = ReportedContracts(store)
        self._snapshots: dict[str, Snapshot] = {}
        self._desired: dict[tuple[Any, ...], list[Desired]] = {}
        self._templates: dict[tuple[Any, ...], Contract] = {}
        self._targets: tuple[int, list[Target]] = (-1, [])

    # -- designs and bindings -----------------------------------------------------------------
    def add_design(self, doc: Mapping[str, Any], actor: str) -> Design:
        """Raises FleetInvalid, or Duplicate for a (design, version) stored already."""
        design = parse_design(doc)
        self.store.fleet.add_design(design.name, design.version, dict(doc), self.clock(), actor)
        self._audit(actor, AuditAction.DESIGN_ADD, {"design": design.ref})
        return design

    def add_binding(self, doc: Mapping[str, Any], actor: str) -> tuple[Binding, int]:
        """Raises FleetInvalid (also for a design the hub does not have)."""
        binding = parse_binding(doc)
        if not self.store.fleet.designs(binding.design):
            raise FleetInvalid([FleetIssue(design=binding.design, binding=binding.name, device=None,
                                           field="design", reason="no design of that name is "
                                           "stored; add the design first", origin="binding")])
        revision = self.store.fleet.add_binding(binding.name, binding.design, dict(doc),
                                                self.clock(), actor)
        self._audit(actor, AuditAction.BINDING_ADD, {"binding": binding.name, "revision": revision})
        return binding, revision

    # -- snapshots ----------------------------------------------------------------------------
    def create_snapshot(self, request: Mapping[str, Any], actor: str) -> tuple[SnapshotRecord, bool]:
        """Make (or find) the snapshot `request` describes: {designs?: {name: version | null},
        bindings?: [name], target?: selector}. Returns it and whether it is new. Raises
        FleetInvalid, NotFound (a design or binding the hub does not have)."""
        target = parse_selector(request.get("target", {}))
        wanted = request.get("designs")
        stored_bindings = self.store.fleet.bindings()
        names = request.get("bindings")
        if names is not None:
            missing = sorted(set(names) - {b.name for b in stored_bindings})
            if missing:
                raise NotFound("binding", missing[0])
            stored_bindings = [b for b in stored_bindings if b.name in names]
        if wanted is None:
            wanted = {b.document.get("design"): None for b in stored_bindings}
        designs = [self.store.fleet.design(str(n), v) for n, v in sorted(wanted.items(), key=str)]
        bound = stored_bindings if names is not None else \
            [b for b in stored_bindings if b.document.get("design") in wanted]
        snap = build_snapshot([parse_design(d.document) for d in designs],
                              [parse_binding(b.document) for b in bound], target)
        body = encode_snapshot(snap)
        source = {"designs": [f"{d.name}@{d.version}" for d in designs],
                  "bindings": {b.name: b.version for b in bound}, "target": target.to_mapping()}
        rec = SnapshotRecord(id=snapshot_id(body), body=body, created_ms=self.clock(), actor=actor,
                             source=source)
        created = self.store.fleet.add_snapshot(rec)
        if created:
            self._audit(actor, AuditAction.SNAPSHOT_CREATE, {"snapshot": rec.id, **source})
            self._snapshots[rec.id] = snap
        return (rec if created else self.store.fleet.snapshot(rec.id)), created

    def snapshot(self, sid: str) -> Snapshot:
        """The decoded snapshot (cached: it never changes). Raises NotFound."""
        if sid not in self._snapshots:
            self._snapshots[sid] = decode_snapshot(self.store.fleet.snapshot(sid).body)
        return self._snapshots[sid]

    # -- devices --------------------------------------------------------------------------------
    def targets(self, selector: Selector | None = None) -> list[Target]:
        """Registered devices (picked by `selector`), by id; rebuilt when the registry changed."""
        if self._targets[0] != self.registry.generation:
            self._targets = (self.registry.generation, [
                Target(id=d.id, site=d.site, labels=dict(d.labels)) for d in self.registry.all()])
        found = self._targets[1]
        return [t for t in found if selector is None or selector.matches(t)]

    def target(self, device: str) -> Target:
        rec = self.registry.get(device)
        if rec is None:
            raise NotFound("device", device)
        return Target(id=rec.id, site=rec.site, labels=dict(rec.labels))

    def desired(self, sid: str, t: Target) -> list[Desired]:
        """The contracts snapshot `sid` gives device `t` ([] when its target leaves `t` out)."""
        key = (sid, t.id, t.site, tuple(sorted(t.labels.items())))
        found = self._desired.get(key)
        if found is None:
            snap = self.snapshot(sid)
            found = [self._compile(sid, a.design, a.binding, a.problem, t)
                     for a in assignments(snap, t)]
            if len(self._desired) >= MAX_CACHED:
                self._desired.clear()
                self._templates.clear()
            self._desired[key] = found
        return found

    def _compile(self, sid: str, design: Design | None, binding: Binding | None,
                 problem: FleetIssue | None, t: Target) -> Desired:
        name = contract_name(design.name, t.id) if design else None
        ref = design.ref if design else None
        if design is None or binding is None:
            return Desired(device=t.id, contract=name, design=ref, binding=None,
                           issues=(problem,) if problem else ())
        try:
            c = self._compiled(sid, design, binding, t)
        except FleetInvalid as exc:
            return Desired(device=t.id, contract=name, design=ref, binding=binding.name,
                           issues=tuple(exc.issues))
        doc = to_mapping(c)  # once for both: the digest and the diffable form
        return Desired(device=t.id, contract=name, design=ref, binding=binding.name, compiled=c,
                       digest=document_digest(doc), document=comparable_document(doc))

    def _compiled(self, sid: str, design: Design, binding: Binding, t: Target) -> Contract:
        """A label binding compiles once per site; each further device gets that contract renamed
        (contracts.fleet_compile.renamed), 1,000 devices cost 50 compilations, not 1,000."""
        key = (sid, design.ref, binding.name, t.site)
        template = self._templates.get(key) if binding.device is None else None
        c = renamed(template, design.name, t) if template is not None else None
        if c is None:
            c = compile_contract(design, binding, t, version=1, valid_from_ms=COMPILE_EPOCH_MS)
            if binding.device is None:
                self._templates[key] = c
        return c

    def _audit(self, actor: str, action: AuditAction, detail: Mapping[str, Any],
               device: str | None = None) -> None:
        entry = AuditEntry(ts_ms=self.clock(), actor=actor, action=action, outcome=Outcome.OK,
                           device=device, detail=dict(detail))
        self.store.audit.add(entry)
        log_entry(entry)

    def set_desired(self, device: str, sid: str, actor: str) -> None:
        """Raises NotFound for an unknown device or snapshot."""
        self.target(device)
        self.store.fleet.snapshot(sid)
        self.store.fleet.set_desired(device, sid, self.clock(), actor)
        self._audit(actor, AuditAction.DESIRED_SET, {"snapshot": sid}, device=device)

    def clear_desired(self, device: str, actor: str) -> str | None:
        """Nothing is desired of `device` any more: its desired snapshot, drift rows and drift
        alarm go (audited, with the snapshot that was desired). Returns that snapshot id, or None
        when none was set (nothing changes, nothing is audited). Raises NotFound for an unknown
        device."""
        self.target(device)
        with self.store.tx():
            cleared = self.store.fleet.clear_desired(device)
            if cleared is not None:
                self.store.alarms.clear_kind(device, AlarmKind.DRIFT, self.clock())
                self._audit(actor, AuditAction.DESIRED_CLEAR, {"snapshot": cleared},
                            device=device)
        return cleared
