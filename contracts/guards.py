"""Input guards: the checks that trip a running contract into its safe state (invariant 3).

Rules, applied every cycle to the contract's read points in contract order; the first failure wins:
- a reading that is missing, or whose quality is BAD (or value None), trips `bad_quality` and
  carries the reading's own reason ("timeout", "exception:4", "frozen", ...);
- `now - ts_ms > stale_after_ms` trips `stale` (a reading exactly `stale_after_ms` old still passes);
- a value outside the point's `range` (inclusive) trips `out_of_range`.
Write points are not guarded here: their read-back is the agent's concern (second-writer alarm).
Pure: values in, a `Trip` or None out.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from contracts.inputs import Quality, Reading
from contracts.schema import Contract
from contracts.types import EpochMs, PointName, Value


class TripReason(enum.StrEnum):
    """Why a contract latched into SAFE. Journaled as-is; RESUME clears only a healthy trip."""

    BAD_QUALITY = "bad_quality"
    STALE = "stale"
    OUT_OF_RANGE = "out_of_range"
    AUTONOMY = "autonomy"
    ENGINE_ERROR = "engine_error"
    INTERLOCK = "interlock"  # another contract on the agent tripped (`interlock:` in the schema)
    ROLLOUT_FALLBACK = "rollout_fallback"  # installed by the agent's fallback (agent/fallback_rules.py)


@dataclass(frozen=True, kw_only=True, slots=True)
class Trip:
    """One failed guard: which point, why, the offending value and the limit it broke."""

    point: PointName
    reason: TripReason
    value: Value | None = None
    limit: float | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Guard:
    """A read point's checks, compiled once: `stale_ms` and the inclusive range, each optional."""

    name: PointName
    stale_ms: int | None
    low: float | None
    high: float | None


def compile_guards(contract: Contract) -> tuple[Guard, ...]:
    """The guards of `contract`'s read points, in contract order."""
    return tuple(
        Guard(p.name, p.stale_after_ms, *(p.range if p.range is not None else (None, None)))
        for p in contract.read_points
    )


def check(guards: tuple[Guard, ...], readings: Mapping[PointName, Reading], now: EpochMs) -> Trip | None:
    """The first failed guard, in contract order, or None when every read point is healthy."""
    for g in guards:
        r = readings.get(g.name)
        if r is None or r.quality is not Quality.GOOD or r.value is None:
            return _bad(g.name, r)
        if g.stale_ms is not None and now - r.ts_ms > g.stale_ms:
            return Trip(point=g.name, reason=TripReason.STALE, value=now - r.ts_ms,
                        limit=float(g.stale_ms))
        v = r.value
        if g.low is not None and v < g.low:
            return Trip(point=g.name, reason=TripReason.OUT_OF_RANGE, value=v, limit=g.low)
        if g.high is not None and v > g.high:
            return Trip(point=g.name, reason=TripReason.OUT_OF_RANGE, value=v, limit=g.high)
    return None


def _bad(name: PointName, r: Reading | None) -> Trip:
    if r is None:
        detail = "missing"
    else:
        detail = r.reason or ("no_value" if r.quality is Quality.GOOD else r.quality.value)
    return Trip(point=name, reason=TripReason.BAD_QUALITY, detail=detail)
