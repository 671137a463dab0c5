"""Designs: contract templates with named parameters, written once and bound per device.

Rules of this module (pure: no I/O, no clock):
- A design document is a contract document without what is site-specific: no `contract`,
  `version`, `device`, `site` or validity times, and points without `address`, `unit_id` or
  `endpoint` (a binding gives those, contracts/fleet_binding.py). It adds `design` (its id),
  `version`, `parameters` and `validity_s` (how long a compiled contract is valid).
- A parameter is `{type: number | integer | bool, default?, range?}`. A template value that is
  exactly `"$name"` becomes the parameter's value; inside an expression (`until`, `when`) `$name`
  is replaced by the value's literal (`level >= $fill_level` -> `level >= 4.0`). A reference to a
  parameter the design does not declare is refused here, naming where it is.
- Write points get `owner` = the compiled contract's id (single writer, invariant 2): a design
  never names an owner.
- `parse_design(mapping)` checks this shape and raises DesignInvalid listing every issue (field
  path + reason). The contract rules proper (types vs tables, limits, expressions) are checked per
  device when a design is compiled (fleet_compile), where every value is known.
- A design is immutable once stored: (design, version) names one document forever.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from contracts.errors import FleetInvalid, FleetIssue
from contracts.limits import MAX_POINTS, MAX_STEPS, MAX_VERSION, quote
from contracts.schema import ID_RE, NAME_RE

PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]{0,63})")
"""A parameter reference inside a template string."""

MAX_PARAMETERS = 64
"""Parameters per design: a pump's limits and setpoints are a handful; 64 keeps bindings readable."""

DEFAULT_VALIDITY_S = 86_400
"""A compiled contract is valid for a day unless the design says otherwise (contracts expire:
an agent cut off for longer falls back to its safe state, invariant 3)."""

MAX_VALIDITY_S = 366 * 86_400

SITE_FIELDS = frozenset({"address", "unit_id", "endpoint"})
"""Point fields a binding gives; a design that sets them is refused (they differ per device)."""

_TOP_KEYS = frozenset({"design", "version", "description", "parameters", "validity_s",
                       "scan_period_ms", "points", "safe_state", "steps", "offline", "expect",
                       "tolerance", "labels"})
_KINDS = ("number", "integer", "bool")


@dataclass(frozen=True, kw_only=True)
class Parameter:
    name: str
    kind: str  # one of _KINDS
    default: bool | int | float | None = None
    range: tuple[float, float] | None = None


@dataclass(frozen=True, kw_only=True)
class Design:
    """A parsed design; `document` is the template as written (JSON-able, read-only)."""

    name: str
    version: int
    parameters: tuple[Parameter, ...]
    validity_s: int
    document: Mapping[str, Any]

    @property
    def ref(self) -> str:
        """`tank-fill@3`: how errors, snapshots and plans name a design version."""
        return f"{self.name}@{self.version}"

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def point_names(self) -> tuple[str, ...]:
        return tuple(p["name"] for p in self.document.get("points", ()))


class _Issues:
    def __init__(self, design: str) -> None:
        self.design = design
        self.found: list[FleetIssue] = []

    def add(self, field_path: str, reason: str) -> None:
        self.found.append(FleetIssue(design=self.design, binding=None, device=None,
                                     field=field_path, reason=reason, origin="design"))


def parse_design(m: Any) -> Design:
    """The design `m` describes. Raises FleetInvalid naming every bad field."""
    if not isinstance(m, Mapping):
        raise FleetInvalid([FleetIssue(design="?", binding=None, device=None, field="<document>",
                                       reason="must be a mapping")])
    name, version = m.get("design"), m.get("version")
    issues = _Issues(f"{name}@{version}" if isinstance(name, str) else "?")
    _check_top(issues, m)
    params = _parameters(issues, m.get("parameters", {}))
    _check_points(issues, m.get("points"))
    _check_references(issues, m, {p.name for p in params})
    validity: Any = m.get("validity_s", DEFAULT_VALIDITY_S)
    if not _is_int(validity) or not 1 <= validity <= MAX_VALIDITY_S:
        issues.add("validity_s", f"must be an integer within 1..{MAX_VALIDITY_S}, got {quote(validity)}")
    if issues.found:
        raise FleetInvalid(issues.found)
    return Design(name=str(name), version=int(m["version"]), parameters=params,
                  validity_s=int(validity), document=MappingProxyType(dict(m)))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_top(issues: _Issues, m: Mapping[str, Any]) -> None:
    for key in m:
        if key not in _TOP_KEYS:
            issues.add(str(key)[:64], f"unknown field (allowed: {', '.join(sorted(_TOP_KEYS))})")
    name = m.get("design")
    if not isinstance(name, str) or not ID_RE.match(name):
        issues.add("design", f"must be an id (lowercase letters, digits, '.', '_', '-'), got {quote(name)}")
    version: Any = m.get("version")
    if not _is_int(version) or not 1 <= version <= MAX_VERSION:
        issues.add("version", f"must be an integer within 1..{MAX_VERSION}, got {quote(version)}")
    for key in ("points", "steps"):
        if not isinstance(m.get(key), list):
            issues.add(key, "is required and must be a list")
    if isinstance(m.get("steps"), list) and len(m["steps"]) > MAX_STEPS:
        issues.add("steps", f"has {len(m['steps'])} entries; at most {MAX_STEPS} are allowed")


def _parameters(issues: _Issues, raw: Any) -> tuple[Parameter, ...]:
    if not isinstance(raw, Mapping) or len(raw) > MAX_PARAMETERS:
        issues.add("parameters", f"must be a mapping of at most {MAX_PARAMETERS} parameters")
        return ()
    out = []
    for name, spec in raw.items():
        at = f"parameters.{str(name)[:64]}"
        if not isinstance(name, str) or not NAME_RE.match(name):
            issues.add(at, "must be an identifier (letters, digits, '_')")
            continue
        if not isinstance(spec, Mapping) or spec.get("type") not in _KINDS \
                or set(spec) - {"type", "default", "range", "description"}:
            issues.add(at, f"must be {{type: {' | '.join(_KINDS)}, default?, range?}}, got {quote(spec)}")
            continue
        param = Parameter(name=name, kind=spec["type"], default=spec.get("default"),
                          range=_range(issues, f"{at}.range", spec.get("range")))
        if param.default is not None and (why := value_problem(param, param.default)):
            issues.add(f"{at}.default", why)
        out.append(param)
    return tuple(out)


def _range(issues: _Issues, at: str, raw: Any) -> tuple[float, float] | None:
    if raw is None:
        return None
    if (isinstance(raw, list) and len(raw) == 2 and all(_number(x) for x in raw)
            and raw[0] <= raw[1]):
        return (float(raw[0]), float(raw[1]))
    issues.add(at, f"must be [low, high] numbers with low <= high, got {quote(raw)}")
    return None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def value_problem(p: Parameter, value: Any) -> str | None:
    """Why `value` is not a value of parameter `p`, or None."""
    if p.kind == "bool":
        return None if isinstance(value, bool) else f"must be true or false, got {quote(value)}"
    if not _number(value) or (p.kind == "integer" and not _is_int(value)):
        return f"must be {'an integer' if p.kind == 'integer' else 'a number'}, got {quote(value)}"
    if p.range is not None and not p.range[0] <= value <= p.range[1]:
        return f"must be within {p.range[0]:g}..{p.range[1]:g}, got {quote(value)}"
    return None


def _check_points(issues: _Issues, raw: Any) -> None:
    if not isinstance(raw, list):
        return
    if len(raw) > MAX_POINTS:
        issues.add("points", f"has {len(raw)} entries; at most {MAX_POINTS} are allowed")
        return
    seen: set[str] = set()
    for i, point in enumerate(raw):
        name = point.get("name") if isinstance(point, Mapping) else None
        if not isinstance(name, str) or not NAME_RE.match(name):
            issues.add(f"points[{i}].name", f"must be an identifier, got {quote(name)}")
            continue
        if name in seen:
            issues.add(f"points.{name}", "duplicate point name")
        seen.add(name)
        for key in sorted((SITE_FIELDS | {"owner"}) & set(point)):
            issues.add(f"points.{name}.{key}", "is given per device by a binding" if key != "owner"
                       else "is the compiled contract's id; a design names no owner")


def _check_references(issues: _Issues, m: Mapping[str, Any], declared: set[str]) -> None:
    for path, name in references(m):
        if name not in declared:
            issues.add(path, f"names parameter ${name}, which the design does not declare")


def references(doc: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, parameter name) of every `$name` in the template's strings, in document order."""
    if isinstance(doc, str):
        for match in PARAM_RE.finditer(doc):
            yield path or "<document>", match.group(1)
    elif isinstance(doc, Mapping):
        for key, value in doc.items():
            if key != "parameters" or path:
                yield from references(value, f"{path}.{key}" if path else str(key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from references(value, f"{path}[{i}]")
