"""Snapshots: an immutable, content-addressed set of design versions, bindings and a target.

Rules of this module (pure):
- `encode_snapshot` is canonical CBOR (contracts.codec) of `{v, designs, bindings, target}`:
  designs sorted by (name, version), bindings by name, the target's lists sorted. A document's
  mappings keep their written order (a step's `do` is applied in that order), so each mapping
  travels as `{"(pairs)": [[key, value], ...]}`, which no document key can spell (keys are ids).
  The same inputs therefore give the same bytes, and `snapshot_id` (hex SHA-256 of them) names the
  snapshot: equal ids, equal content.
- `build_snapshot` refuses, naming the binding, a binding whose design is not in the snapshot, and
  two versions of one design (which one would a device get?).
- `assignments(snapshot, device)` says which designs the snapshot gives a device and through which
  binding; a device the target picks but no binding places is `binding_missing` for the planner.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts.codec import canonical_dumps, loads
from contracts.errors import EncodingError, FleetInvalid, FleetIssue
from contracts.fleet_binding import Binding, Selector, Target, parse_binding, parse_selector, resolve
from contracts.fleet_design import Design, parse_design

SNAPSHOT_VERSION = 1
"""Format of an encoded snapshot; checked on decode."""

_PAIRS = "(pairs)"


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    designs: tuple[Design, ...]
    bindings: tuple[Binding, ...]
    target: Selector

    def design(self, name: str) -> Design | None:
        return next((d for d in self.designs if d.name == name), None)


@dataclass(frozen=True, kw_only=True)
class Assignment:
    """One design the snapshot gives a device, through `binding` (None: the device is targeted
    but no binding of any design places it), or the FleetIssue that stops it (ambiguity)."""

    design: Design | None
    binding: Binding | None
    problem: FleetIssue | None = None


def build_snapshot(designs: Iterable[Design], bindings: Iterable[Binding],
                   target: Selector) -> Snapshot:
    """Raises FleetInvalid naming each binding without its design and each doubled design."""
    ds = tuple(sorted(designs, key=lambda d: (d.name, d.version)))
    bs = tuple(sorted(bindings, key=lambda b: b.name))
    issues = [FleetIssue(design=d.ref, binding=None, device=None, field="design",
                         reason="two versions of one design in a snapshot")
              for a, d in zip(ds, ds[1:]) if a.name == d.name]
    names = {d.name for d in ds}
    issues += [FleetIssue(design=b.design, binding=b.name, device=None, field="design",
                          reason=f"design {b.design!r} is not in the snapshot", origin="binding")
               for b in bs if b.design not in names]
    issues += [FleetIssue(design=None, binding=b.name, device=None, field="binding",
                          reason="two bindings of this name", origin="binding")
               for a, b in zip(bs, bs[1:]) if a.name == b.name]
    if issues:
        raise FleetInvalid(issues)
    return Snapshot(designs=ds, bindings=bs, target=target)


def _ordered(doc: Any) -> Any:
    if isinstance(doc, Mapping):
        return {_PAIRS: [[k, _ordered(v)] for k, v in doc.items()]}
    if isinstance(doc, (list, tuple)):
        return [_ordered(v) for v in doc]
    return doc


def _unordered(doc: Any) -> Any:
    if isinstance(doc, Mapping):
        if set(doc) != {_PAIRS} or not isinstance(doc[_PAIRS], list):
            raise EncodingError("snapshot: a document mapping is not a list of pairs")
        return {k: _unordered(v) for k, v in doc[_PAIRS]}
    if isinstance(doc, list):
        return [_unordered(v) for v in doc]
    return doc


def encode_snapshot(s: Snapshot) -> bytes:
    """The canonical bytes of `s`: equal snapshots, equal bytes (the module rules)."""
    return canonical_dumps({
        "v": SNAPSHOT_VERSION,
        "designs": [_ordered(d.document) for d in s.designs],
        "bindings": [_ordered(b.document) for b in s.bindings],
        "target": s.target.to_mapping(),
    })


def snapshot_id(body: bytes) -> str:
    """The snapshot's id: hex SHA-256 of its canonical encoding."""
    return hashlib.sha256(body).hexdigest()


def decode_snapshot(body: bytes) -> Snapshot:
    """Raises EncodingError for bytes that are not a snapshot of this version, FleetInvalid for
    content that does not parse."""
    doc = loads(body)
    if not isinstance(doc, Mapping) or doc.get("v") != SNAPSHOT_VERSION or \
            set(doc) != {"v", "designs", "bindings", "target"}:
        raise EncodingError(f"not a version {SNAPSHOT_VERSION} snapshot")
    return build_snapshot([parse_design(_unordered(d)) for d in doc["designs"]],
                          [parse_binding(_unordered(b)) for b in doc["bindings"]],
                          parse_selector(doc["target"]))


def assignments(s: Snapshot, t: Target) -> list[Assignment]:
    """What `s` gives device `t`: [] when its target does not pick `t`; one Assignment per design
    bound to `t`; a single binding-less Assignment when it picks `t` but binds it nowhere."""
    if not s.target.matches(t):
        return []
    out = []
    for d in s.designs:
        try:
            binding = resolve(s.bindings, d.name, t)
        except FleetInvalid as exc:
            out.append(Assignment(design=d, binding=None, problem=exc.issues[0]))
            continue
        if binding is not None:
            out.append(Assignment(design=d, binding=binding))
    return out or [Assignment(design=None, binding=None, problem=FleetIssue(
        design=None, binding=None, device=t.id, field="bindings",
        reason="the snapshot targets this device but no binding places it"))]
