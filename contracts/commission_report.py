"""A commissioning report and the hub's request for one — pure records, shared by agent and hub.

Rules of this module:
- A report says, per point, what a few seconds of read-only polling found (agent/commission.py
  decides it): the last good value with its unit, the range check, moving or frozen, hints in
  words, the read-back of write points, and a verdict; per endpoint, the read latency.
- Verdicts: `fail` is "not right" (a read error, a value that does not decode or is outside its
  range, an implausible magnitude, a write point that does not read back); `warn` is worth a look
  but may be the process at rest (frozen, pinned at 0 or 65535). A report is `ok` without a fail.
- A report crosses the network (the agent answers the hub on `…/commission/report`), so
  `from_mapping` checks every field's type and bounds every count and text (invariant 10), with a
  ReportError naming the field; `to_mapping(from_mapping(m)) == m` for every report we write.
- The hub's request and the agent's reply (the MQTT payloads) are in contracts/commission_wire.py.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from contracts.errors import EncodingError
from contracts.limits import MAX_EPOCH_MS, MAX_POINTS, MAX_VERSION, quote
from contracts.types import Value

REPORT_VERSION = 1
MAX_TEXT = 300
"""Longest hint, error or name a report carries (a device's words are quoted, bounded)."""
MAX_HINTS = 8
MAX_ENDPOINTS = 64
MAX_SECONDS = 60.0
"""A commissioning poll is a few seconds; a minute is the most a request may ask for."""


class ReportError(EncodingError):
    """A report or request that does not have the documented shape; names the field."""


class Verdict(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


class Motion(enum.StrEnum):
    MOVING = "moving"
    FROZEN = "frozen"
    UNKNOWN = "unknown"  # fewer than two good reads


class RangeCheck(enum.StrEnum):
    OK = "ok"
    OUT = "out_of_range"
    NONE = "no_range"      # the contract gives the point no range
    UNKNOWN = "unknown"    # no good read


@dataclass(frozen=True, kw_only=True)
class PointCheck:
    name: str
    endpoint: str
    where: str                 # "unit 1 holding 20"
    type: str
    direction: str
    unit: str
    value: Value | None        # the last good read, in engineering units
    reads: int
    good: int
    range: RangeCheck
    motion: Motion
    readback: bool | None      # write points: whether a read of the write register works
    verdict: Verdict
    hints: tuple[str, ...] = ()
    error: str | None = None   # the last read's failure, in words


@dataclass(frozen=True, kw_only=True)
class EndpointLatency:
    endpoint: str
    reads: int
    failed: int
    median_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True, kw_only=True)
class CommissionReport:
    contract: str
    version: int
    device: str
    started_ms: int
    seconds: float
    points: tuple[PointCheck, ...]
    endpoints: tuple[EndpointLatency, ...]

    @property
    def ok(self) -> bool:
        """Whether every point is right (no `fail` verdict)."""
        return all(p.verdict is not Verdict.FAIL for p in self.points)

    def failing(self) -> tuple[PointCheck, ...]:
        return tuple(p for p in self.points if p.verdict is Verdict.FAIL)

    def to_mapping(self) -> dict[str, Any]:
        """Plain values (JSON and CBOR alike)."""
        return {
            "v": REPORT_VERSION, "contract": self.contract, "version": self.version,
            "device": self.device, "started_ms": self.started_ms, "seconds": self.seconds,
            "ok": self.ok, "points": [_point_map(p) for p in self.points],
            "endpoints": [vars(e).copy() for e in self.endpoints],
        }

    @classmethod
    def from_mapping(cls, m: Any) -> Self:
        """Check and build. Raises ReportError naming the first bad field."""
        r = ReportReader(m, "report")
        if r.get("v", int) != REPORT_VERSION:
            raise r.bad("v", f"must be {REPORT_VERSION}")
        points = r.items("points", MAX_POINTS)
        endpoints = r.items("endpoints", MAX_ENDPOINTS)
        report = cls(contract=r.text("contract"), version=r.integer("version", 1, MAX_VERSION),
                     device=r.text("device"), started_ms=r.integer("started_ms", 0, MAX_EPOCH_MS),
                     seconds=r.number("seconds"),
                     points=tuple(_point_of(ReportReader(p, f"points[{i}]")) for i, p in enumerate(points)),
                     endpoints=tuple(_endpoint_of(ReportReader(e, f"endpoints[{i}]"))
                                     for i, e in enumerate(endpoints)))
        if r.get("ok", bool) != report.ok:
            raise r.bad("ok", "disagrees with the points' verdicts")
        r.done({"v", "contract", "version", "device", "started_ms", "seconds", "ok", "points",
                "endpoints"})
        return report


def _point_map(p: PointCheck) -> dict[str, Any]:
    m = vars(p).copy()
    m.update(range=p.range.value, motion=p.motion.value, verdict=p.verdict.value, hints=list(p.hints))
    return m


_POINT_KEYS = frozenset({"name", "endpoint", "where", "type", "direction", "unit", "value", "reads",
                         "good", "range", "motion", "readback", "verdict", "hints", "error"})


def _point_of(r: ReportReader) -> PointCheck:
    value = r.m.get("value")
    if value is not None and not isinstance(value, (bool, int, float)):
        raise r.bad("value", "must be a number, a bool or null")
    readback = r.m.get("readback")
    if readback is not None and not isinstance(readback, bool):
        raise r.bad("readback", "must be a bool or null")
    hints = r.items("hints", MAX_HINTS)
    check = PointCheck(
        name=r.text("name"), endpoint=r.text("endpoint"), where=r.text("where"), type=r.text("type"),
        direction=r.text("direction"), unit=r.text("unit", empty=True), value=value,
        reads=r.integer("reads", 0, 1 << 31), good=r.integer("good", 0, 1 << 31),
        range=r.choice("range", RangeCheck), motion=r.choice("motion", Motion), readback=readback,
        verdict=r.choice("verdict", Verdict),
        hints=tuple(_bounded_text(r, "hints", h) for h in hints),
        error=None if r.m.get("error") is None else r.text("error"))
    r.done(_POINT_KEYS)
    return check


def _endpoint_of(r: ReportReader) -> EndpointLatency:
    e = EndpointLatency(endpoint=r.text("endpoint"), reads=r.integer("reads", 0, 1 << 31),
                        failed=r.integer("failed", 0, 1 << 31),
                        median_ms=r.opt_number("median_ms"), p99_ms=r.opt_number("p99_ms"))
    r.done({"endpoint", "reads", "failed", "median_ms", "p99_ms"})
    return e


def _bounded_text(r: ReportReader, name: str, v: Any) -> str:
    if not isinstance(v, str) or len(v) > MAX_TEXT:
        raise r.bad(name, f"must be text of at most {MAX_TEXT} characters")
    return v


class ReportReader:
    """Typed, bounded field access to one mapping; errors name `where.field`."""

    def __init__(self, m: Any, where: str) -> None:
        if not isinstance(m, Mapping):
            raise ReportError(f"{where}: must be a map, got {quote(m)}")
        self.m, self.where = m, where

    def bad(self, name: str, why: str) -> ReportError:
        return ReportError(f"{self.where}.{name}: {why}, got {quote(self.m.get(name))}")

    def get(self, name: str, kind: type) -> Any:
        v = self.m.get(name)
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise self.bad(name, f"must be {kind.__name__}")
        return v

    def text(self, name: str, *, empty: bool = False) -> str:
        v = self.get(name, str)
        if (not v and not empty) or len(v) > MAX_TEXT:
            raise self.bad(name, f"must be text of 1..{MAX_TEXT} characters")
        return str(v)

    def integer(self, name: str, low: int, high: int) -> int:
        v = self.get(name, int)
        if not low <= v <= high:
            raise self.bad(name, f"must be within {low}..{high}")
        return int(v)

    def number(self, name: str) -> float:
        v = self.m.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1e300 < v < 1e300:
            raise self.bad(name, "must be a finite number")
        return float(v)

    def opt_number(self, name: str) -> float | None:
        return None if self.m.get(name) is None else self.number(name)

    def choice(self, name: str, enum_type: type[enum.StrEnum]) -> Any:
        try:
            return enum_type(self.get(name, str))
        except ValueError:
            raise self.bad(name, f"must be one of {', '.join(e.value for e in enum_type)}") from None

    def items(self, name: str, most: int) -> list[Any]:
        v = self.m.get(name)
        if not isinstance(v, (list, tuple)) or len(v) > most:
            raise self.bad(name, f"must be a list of at most {most}")
        return list(v)

    def done(self, known: frozenset[str] | set[str]) -> None:
        extra = sorted(str(k) for k in self.m if k not in known)
        if extra:
            raise ReportError(f"{self.where}.{extra[0][:40]}: is not a field of this record")
