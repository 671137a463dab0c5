"""Bindings: what is site-specific about one design on one device, or on every device with given
labels on a site; and the selectors that pick devices.

Rules of this module (pure):
- A binding document is `{binding, design, match, endpoint?, unit_id?, points, parameters?}`.
  `match` is `{device: id}` or `{site: id, labels?: {k: v}}`. `points` maps each design point to
  `{address, unit_id?, endpoint?, word_order?, byte_order?}`; `address` is the 0-based offset or a
  Modicon string (`"40021"`, checked against the point's table when compiled). `endpoint` and
  `unit_id` at the top are the defaults for every point.
- For one device and one design, a binding that names the device wins over label bindings; two
  label bindings of the same design matching one device are ambiguous and refused by name
  (`resolve`), since guessing would give that device an arbitrary contract.
- `parse_binding` raises FleetInvalid naming the binding and each bad field.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from contracts.errors import FleetInvalid, FleetIssue
from contracts.limits import MAX_POINTS, quote
from contracts.schema import ID_RE, NAME_RE

_TOP_KEYS = frozenset({"binding", "design", "match", "endpoint", "unit_id", "points",
                       "parameters", "description"})
POINT_KEYS = frozenset({"address", "unit_id", "endpoint", "word_order", "byte_order"})
"""What a binding may say about one point: where it is on this device, never what it means."""

MAX_LABELS = 32


@dataclass(frozen=True, kw_only=True)
class Target:
    """A device as the registry knows it: what selectors and bindings match against."""

    id: str
    site: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Selector:
    """Devices by id, by site and by labels (all given parts must hold; an empty one picks all)."""

    devices: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    def matches(self, t: Target) -> bool:
        return ((not self.devices or t.id in self.devices)
                and (not self.sites or t.site in self.sites)
                and all(t.labels.get(k) == v for k, v in self.labels))

    def to_mapping(self) -> dict[str, Any]:
        return {"devices": sorted(self.devices), "sites": sorted(self.sites),
                "labels": dict(sorted(self.labels))}


@dataclass(frozen=True, kw_only=True)
class Binding:
    name: str
    design: str
    device: str | None        # match by id, or
    site: str | None          # by site and labels
    labels: tuple[tuple[str, str], ...]
    document: Mapping[str, Any]

    def matches(self, t: Target) -> bool:
        if self.device is not None:
            return t.id == self.device
        return t.site == self.site and all(t.labels.get(k) == v for k, v in self.labels)

    def point(self, name: str) -> Mapping[str, Any] | None:
        found = self.document.get("points", {}).get(name)
        return found if isinstance(found, Mapping) else None


def _issue(binding: str, field_path: str, reason: str) -> FleetIssue:
    return FleetIssue(design=None, binding=binding, device=None, field=field_path, reason=reason,
                      origin="binding")


def _ident(v: Any) -> bool:
    return isinstance(v, str) and bool(ID_RE.match(v))


def _labels(v: Any) -> bool:
    return isinstance(v, Mapping) and len(v) <= MAX_LABELS and all(
        isinstance(k, str) and isinstance(x, str) and len(k) <= 128 and len(x) <= 128
        for k, x in v.items())


def parse_selector(m: Any, where: str = "target") -> Selector:
    """`{devices?: [id], sites?: [id], labels?: {k: v}}`. Raises FleetInvalid naming the field."""
    bad: list[FleetIssue] = []
    if not isinstance(m, Mapping) or set(m) - {"devices", "sites", "labels"}:
        raise FleetInvalid([FleetIssue(design=None, binding=None, device=None, field=where,
                                       reason="must be {devices?, sites?, labels?}")])
    for key in ("devices", "sites"):
        v = m.get(key, [])
        if not isinstance(v, list) or len(v) > 10_000 or not all(_ident(x) for x in v):
            bad.append(FleetIssue(design=None, binding=None, device=None, field=f"{where}.{key}",
                                  reason=f"must be a list of ids, got {quote(v)}"))
    if not _labels(m.get("labels", {})):
        bad.append(FleetIssue(design=None, binding=None, device=None, field=f"{where}.labels",
                              reason="must be an object of short string labels"))
    if bad:
        raise FleetInvalid(bad)
    return Selector(devices=tuple(sorted(set(m.get("devices", [])))),
                    sites=tuple(sorted(set(m.get("sites", [])))),
                    labels=tuple(sorted(m.get("labels", {}).items())))


def parse_binding(m: Any) -> Binding:
    """The binding `m` describes. Raises FleetInvalid naming every bad field."""
    if not isinstance(m, Mapping):
        raise FleetInvalid([_issue("?", "<document>", "must be a mapping")])
    name = str(m["binding"]) if _ident(m.get("binding")) else "?"
    issues = [_issue(name, str(k)[:64], f"unknown field (allowed: {', '.join(sorted(_TOP_KEYS))})")
              for k in m if k not in _TOP_KEYS]
    if name == "?":
        issues.append(_issue(name, "binding", f"must be an id, got {quote(m.get('binding'))}"))
    if not _ident(m.get("design")):
        issues.append(_issue(name, "design", f"must name a design id, got {quote(m.get('design'))}"))
    issues += _check_match(name, m.get("match"))
    issues += _check_defaults(name, m)
    issues += _check_points(name, m.get("points"))
    if not isinstance(m.get("parameters", {}), Mapping):
        issues.append(_issue(name, "parameters", "must be a mapping of parameter values"))
    if issues:
        raise FleetInvalid(issues)
    match = m["match"]
    return Binding(name=name, design=m["design"], device=match.get("device"),
                   site=match.get("site"), labels=tuple(sorted(match.get("labels", {}).items())),
                   document=MappingProxyType(dict(m)))


def _check_match(name: str, match: Any) -> list[FleetIssue]:
    shape = "must be {device: id} or {site: id, labels?: {key: value}}"
    if not isinstance(match, Mapping):
        return [_issue(name, "match", shape)]
    if "device" in match:
        ok = set(match) == {"device"} and _ident(match["device"])
        return [] if ok else [_issue(name, "match", f"{shape}, got {quote(match)}")]
    if set(match) - {"site", "labels"} or not _ident(match.get("site")):
        return [_issue(name, "match.site", f"{shape}, got {quote(match)}")]
    if not _labels(match.get("labels", {})):
        return [_issue(name, "match.labels", "must be an object of short string labels")]
    return []


def _check_defaults(name: str, m: Mapping[str, Any]) -> list[FleetIssue]:
    out = []
    if "endpoint" in m and not _ident(m["endpoint"]):
        out.append(_issue(name, "endpoint", f"must be an endpoint id, got {quote(m['endpoint'])}"))
    unit = m.get("unit_id", 1)
    if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit <= 247:
        out.append(_issue(name, "unit_id", f"must be within 0..247 (Modbus spec 4.1), got {quote(unit)}"))
    return out


def _check_points(name: str, points: Any) -> list[FleetIssue]:
    if not isinstance(points, Mapping) or len(points) > MAX_POINTS:
        return [_issue(name, "points", "must map point names to {address, unit_id?, endpoint?}")]
    out = []
    for point, spec in points.items():
        at = f"points.{str(point)[:64]}"
        if not isinstance(point, str) or not NAME_RE.match(point):
            out.append(_issue(name, at, "must be a point name"))
        elif not isinstance(spec, Mapping) or "address" not in spec:
            out.append(_issue(name, f"{at}.address", "is required"))
        else:
            out += [_issue(name, f"{at}.{str(k)[:64]}", f"unknown field (a binding gives only "
                           f"{', '.join(sorted(POINT_KEYS))})") for k in spec if k not in POINT_KEYS]
    return out


def resolve(bindings: Iterable[Binding], design: str, t: Target) -> Binding | None:
    """The binding of `design` for device `t`: the one naming it, else the one label binding
    that matches. Raises FleetInvalid when two label bindings match (naming both)."""
    matching = [b for b in bindings if b.design == design and b.matches(t)]
    by_device = [b for b in matching if b.device is not None]
    if by_device:
        return by_device[0]
    if len(matching) > 1:
        names = ", ".join(sorted(b.name for b in matching))
        raise FleetInvalid([FleetIssue(design=design, binding=names, device=t.id, field="match",
                                       reason=f"{len(matching)} label bindings match this device; "
                                              "name the device in one, or narrow the labels")])
    return matching[0] if matching else None
