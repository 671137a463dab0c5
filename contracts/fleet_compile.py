"""design + binding + device -> that device's contract: a pure function, validated per device.

Rules of this module (pure: time and version come in as arguments):
- `compile_contract` fills the design's parameters from the binding (defaults for the rest), puts
  each point where the binding says (address, unit id, endpoint), names the contract
  `{design}.{device}` (a contract id is unique across the fleet, hub/store) and makes it its write
  points' owner, then runs the contract language's own parse + validation (contracts.loader). Every
  issue is reported as a FleetIssue naming the design version, the binding, the device and the
  field in the words of the document that holds it: `points.pump_speed.address` of the binding
  for a bad address, `steps[0].until` of the design for a bad expression.
- `config_digest` hashes what a contract *does*: the contract's content hash with its version and
  validity window set aside, so a re-issued copy of the same configuration (a new version, a
  renewed window) is not drift, and any other change is.
- `field_diff` lists, by stable paths (`points.level.range`, `steps.fill.until`, `safe_state`),
  which fields of a contract change, with their values before and after.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from contracts.codec import canonical_dumps
from contracts.errors import ContractInvalid, FleetInvalid, FleetIssue, Issue
from contracts.fleet_binding import Binding, Target
from contracts.fleet_design import PARAM_RE, Design, value_problem
from contracts.loader import check_mapping
from contracts.schema import ID_RE, Contract
from contracts.schema_serialize import format_time, to_mapping
from contracts.types import EpochMs

VERSIONLESS = ("version", "valid_from", "valid_until", "rollout")
"""What a re-issue changes without changing the configuration (config_digest, field_diff): a
deployment's `rollout` metadata (its id, health window, known-good hash) is about the push, not
about what the contract does."""

_TEMPLATE_KEYS = ("scan_period_ms", "safe_state", "steps", "offline", "expect", "tolerance",
                  "labels")
_SCAN_PERIOD_MS = 100
"""A design that names no scan period runs at 10 Hz, the contract examples' rate."""


def contract_name(design: str, device: str) -> str:
    """The compiled contract's id: one contract lineage per (design, device)."""
    return f"{design}.{device}"


def compile_contract(design: Design, binding: Binding, t: Target, *, version: int,
                     valid_from_ms: EpochMs) -> Contract:
    """The contract `binding` gives device `t` from `design`. Raises FleetInvalid listing every
    issue, each naming design, binding, device and field."""
    found: list[FleetIssue] = []

    def fail(field_path: str, reason: str) -> None:
        found.append(FleetIssue(design=design.ref, binding=binding.name, device=t.id,
                                field=field_path, reason=reason, origin="binding"))

    values = _parameter_values(design, binding, fail)
    name = contract_name(design.name, t.id)
    if not ID_RE.match(name):
        fail("match", f"contract id {name!r} is not an id of at most 64 characters; shorten the "
                      "design or device id")
    points = _points(design, binding, name, values, fail)
    if found:
        raise FleetInvalid(found)
    doc: dict[str, Any] = {
        "contract": name, "version": version, "device": t.id, "site": t.site,
        "valid_from": format_time(valid_from_ms),
        "valid_until": format_time(valid_from_ms + design.validity_s * 1000),
        "scan_period_ms": _SCAN_PERIOD_MS, "points": points,
        **{k: substitute(design.document[k], values) for k in _TEMPLATE_KEYS if k in design.document},
    }
    try:
        return check_mapping(doc)
    except ContractInvalid as exc:
        raise FleetInvalid([_translate(i, design, binding, t, points) for i in exc.issues]) from None


def renamed(template: Contract, design: str, t: Target) -> Contract | None:
    """`template` (compiled for another device through the same label binding) as device `t`'s
    contract: its id, device and write owners renamed. What validation checked does not depend on
    them, so only the new ids are checked; None when they are not ids (compile it in full, and the
    issues say why)."""
    name = contract_name(design, t.id)
    if t.site != template.site or not ID_RE.match(name) or not ID_RE.match(t.id):
        return None
    points = tuple(replace(p, owner=name) if p.writes else p for p in template.points)
    return replace(template, contract=name, device=t.id, points=points)


def _parameter_values(design: Design, binding: Binding, fail: Callable[[str, str], None]) -> dict[str, Any]:
    given = binding.document.get("parameters", {})
    values: dict[str, Any] = {}
    for key in given:
        if design.parameter(key) is None:
            fail(f"parameters.{str(key)[:64]}", f"is not a parameter of design {design.ref} "
                 f"(it has: {', '.join(p.name for p in design.parameters) or 'none'})")
    for p in design.parameters:
        value = given.get(p.name, p.default)
        if value is None:
            fail(f"parameters.{p.name}", f"is required by design {design.ref} (no default)")
        elif why := value_problem(p, value):
            fail(f"parameters.{p.name}", why)
        else:
            values[p.name] = value
    return values


def _points(design: Design, binding: Binding, name: str, values: Mapping[str, Any],
            fail: Callable[[str, str], None]) -> list[dict[str, Any]]:
    out = []
    top = {k: binding.document[k] for k in ("unit_id", "endpoint") if k in binding.document}
    for raw in design.document.get("points", ()):
        placed = binding.point(raw["name"])
        if placed is None:
            fail(f"points.{raw['name']}.address", f"is required: design {design.ref} has point "
                 f"{raw['name']!r} and this binding does not place it")
            continue
        point = {**substitute(raw, values), **top, **placed}
        if point.get("direction") == "write":
            point["owner"] = name
        out.append(point)
    for extra in binding.document.get("points", {}):
        if extra not in design.point_names():
            fail(f"points.{str(extra)[:64]}", f"design {design.ref} has no point of that name")
    return out


def substitute(template: Any, values: Mapping[str, Any]) -> Any:
    """The template with `"$name"` replaced by the value and `$name` in text by its literal."""
    if isinstance(template, str):
        whole = PARAM_RE.fullmatch(template)
        if whole and whole.group(1) in values:
            return values[whole.group(1)]
        return PARAM_RE.sub(lambda m: _literal(values[m.group(1)]) if m.group(1) in values
                            else m.group(0), template)
    if isinstance(template, Mapping):
        return {k: substitute(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [substitute(v, values) for v in template]
    return template


def _literal(value: Any) -> str:
    """A value as the expression language writes it (contracts/expr.py: true/false, numbers)."""
    return ("true" if value else "false") if isinstance(value, bool) else repr(value)


def _translate(i: Issue, design: Design, binding: Binding, t: Target,
               points: list[dict[str, Any]]) -> FleetIssue:
    """A contract issue at a document path, as the field of the design or binding it came from."""
    path, origin = i.path, "design"
    if path.startswith("points["):
        index, _, rest = path[len("points["):].partition("]")
        name = points[int(index)]["name"] if index.isdigit() and int(index) < len(points) else index
        key = rest.lstrip(".").split(".")[0]
        path = f"points.{name}{rest}"
        if key in ("address", "unit_id", "endpoint", "word_order", "byte_order") and (
                key in (binding.point(str(name)) or {}) or key in binding.document):
            origin = "binding"
    return FleetIssue(design=design.ref, binding=binding.name, device=t.id, field=path,
                      reason=i.reason, origin=origin)


def config_digest(c: Contract) -> str:
    """What the contract does, without its version and validity window (hex SHA-256)."""
    return document_digest(to_mapping(c))


def document_digest(doc: Mapping[str, Any]) -> str:
    """`config_digest` of a contract stored as its `to_mapping` document (the hub's records): the
    canonical CBOR of the document without VERSIONLESS, its name -> value maps as ordered pairs
    (as contracts.codec signs them), so `do` order counts and JSON key order does not."""
    out = {k: v for k, v in doc.items() if k not in VERSIONLESS}
    for key in ("safe_state", "expect", "labels"):
        out[key] = list(dict(out.get(key) or {}).items())
    tolerance = dict(out.get("tolerance") or {})
    tolerance["values"] = list(dict(tolerance.get("values") or {}).items())
    out["tolerance"] = tolerance
    out["steps"] = [{**s, "do": list(dict(s.get("do") or {}).items())} for s in out.get("steps", ())]
    return hashlib.sha256(canonical_dumps(out)).hexdigest()


def comparable(c: Contract) -> dict[str, Any]:
    """The contract's document keyed for diffing: points and steps by name, re-issue fields out."""
    return comparable_document(to_mapping(c))


def comparable_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """`comparable` of a contract stored as its `to_mapping` document."""
    doc = {k: v for k, v in document.items() if k not in VERSIONLESS}
    doc["points"] = {p["name"]: p for p in doc.get("points", ())}
    doc["steps"] = {s["name"]: s for s in doc.get("steps", ())}
    return doc


def field_diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
               path: str = "") -> list[dict[str, Any]]:
    """Every leaf that differs between two `comparable` documents: [{field, from, to}], by path."""
    if before == after:  # one C-level comparison prunes every unchanged subtree
        return []
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[dict[str, Any]] = []
        for key in sorted(set(before) | set(after), key=str):
            out += field_diff(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        return out
    if before == after:
        return []
    return [{"field": path or "<contract>", "from": before, "to": after}]
