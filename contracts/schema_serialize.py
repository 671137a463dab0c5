"""Writing a contract back as a document: the inverse of `schema_parse`.

Rules of this module:
- `to_mapping(contract)` is what gets canonically encoded and signed, so it emits every field
  explicitly (defaults included): two contracts that are equal encode to equal bytes, and
  `parse_contract(to_mapping(c)) == c`.
- `interlock` and `rollout` appear only when set, for the same reason as `endpoint` below.
- One exception, for the same reason: a point's `endpoint` is emitted only when set, so a contract
  that names no endpoint encodes (and hashes, and verifies) exactly as it did before the field existed.
- `point_to_brief(point)` is the human form for documents people edit (`fieldpact points import`):
  only the fields that differ from their defaults, in the order of the I/O table.
- Times are RFC 3339 UTC strings with a trailing Z, millisecond precision when needed.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts.schema import SCHEMA_VERSION, Contract, DataType, Order, Point, Step
from contracts.schema_rollout import rollout_to_mapping
from contracts.types import EpochMs

_POINT_DEFAULTS: dict[str, Any] = {
    "endpoint": None, "unit_id": 1, "word_order": Order.BIG.value, "byte_order": Order.BIG.value,
    "unit": "", "scale": 1.0, "offset": 0.0, "owner": None, "range": None, "limits": None,
    "stale_after_ms": None, "frozen_after_ms": None, "max_rate_per_s": None, "deadband": 0.0,
}
"""What `schema_points` fills in for a field left out; `point_to_brief` leaves these out again."""


def format_time(ms: EpochMs) -> str:
    """RFC 3339 UTC with millisecond precision and a trailing Z; inverse of parsing."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def _opt(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def point_to_mapping(p: Point) -> dict[str, Any]:
    endpoint = {"endpoint": p.endpoint} if p.endpoint is not None else {}
    return {
        "name": p.name, **endpoint, "unit_id": p.unit_id, "table": p.table.value,
        "address": p.address, "type": p.type.value, "direction": p.direction.value,
        "word_order": p.word_order.value, "byte_order": p.byte_order.value, "unit": p.unit,
        "scale": p.scale, "offset": p.offset, "owner": p.owner, "range": _opt(p.range),
        "limits": _opt(p.limits), "stale_after_ms": p.stale_after_ms,
        "frozen_after_ms": p.frozen_after_ms, "max_rate_per_s": p.max_rate_per_s,
        "deadband": p.deadband,
    }


def point_to_brief(p: Point) -> dict[str, Any]:
    """The point's fields that differ from their defaults (a bit point's `type: bool` included)."""
    full = point_to_mapping(p)
    brief = {k: v for k, v in full.items() if k not in _POINT_DEFAULTS or v != _POINT_DEFAULTS[k]}
    if p.table.is_bit and p.type is DataType.BOOL:
        del brief["type"]  # the default for coils and discrete inputs
    return brief


def _step_to_mapping(s: Step) -> dict[str, Any]:
    return {
        "name": s.name, "do": dict(s.do), "until": s.until, "for_s": s.for_s,
        "timeout_s": s.timeout_s, "on_timeout": s.on_timeout.value,
    }


def to_mapping(c: Contract) -> dict[str, Any]:
    """The full, explicit document for `c`; `parse_contract(to_mapping(c)) == c`. `interlock`
    and `rollout` appear only when set, so a contract without them keeps the content hash it
    always had."""
    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "contract": c.contract, "version": c.version, "device": c.device,
        "site": c.site, "valid_from": format_time(c.valid_from),
        "valid_until": format_time(c.valid_until), "scan_period_ms": c.scan_period_ms,
        "points": [point_to_mapping(p) for p in c.points], "safe_state": dict(c.safe_state),
        "steps": [_step_to_mapping(s) for s in c.steps],
        "offline": {"autonomy_s": c.offline.autonomy_s, "then": c.offline.then.value},
        "expect": {e.point: {"rate_per_s": e.rate_per_s, "when": e.when} for e in c.expect},
        "tolerance": {"timing_s": c.tolerance.timing_s, "values": dict(c.tolerance.values)},
        "labels": dict(c.labels),
    }
    if c.interlock:
        doc["interlock"] = list(c.interlock)
    if c.rollout is not None:
        doc["rollout"] = rollout_to_mapping(c.rollout)
    return doc
