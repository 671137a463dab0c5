"""Input filters, pure, applied before the engine sees a reading: guards and the journaled view.

Rules:
- Frozen: a device that keeps answering but whose value stops changing is a classic silent fault (a
  stuck transmitter, a PLC whose logic halted). A read point with `frozen_after_ms` whose raw value is
  *exactly* equal for that long is marked BAD "frozen". Exact equality is the point: a live analog
  signal always jitters in its last bits; a frozen one repeats the same register contents.
- Spike: a change faster than the point's `max_rate_per_s` (physically impossible for the process) is
  marked BAD "spike" for that cycle.
- Deadband: the engine is fed the *journaled view* of each input — the last value written to the
  journal, which changes only when the reading moves beyond `deadband` or its quality changes. The
  journal then holds exactly what the engine saw, so a replay of the journal reproduces the outputs
  bit for bit (invariant 1) while the journal stays small.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from contracts.inputs import Quality, Reading
from contracts.schema import Point
from contracts.types import EpochMs, PointName, Value


@dataclass(frozen=True, kw_only=True, slots=True)
class _Track:
    value: Value | None
    since_ms: EpochMs
    last_ms: EpochMs


class InputGuards:
    """Frozen and spike detection per read point. Holds only the last raw value and time per point."""

    def __init__(self, points: Sequence[Point]) -> None:
        # Only points with a guard are tracked: the others pass through as read.
        self._points = tuple(p for p in points if not p.writes and (
            p.frozen_after_ms is not None or p.max_rate_per_s is not None))
        self._tracks: dict[PointName, _Track] = {}

    def apply(self, readings: Mapping[PointName, Reading]) -> dict[PointName, Reading]:
        """Readings with quality lowered to BAD where a guard fires; others passed through."""
        out = dict(readings)
        for point in self._points:
            reading = readings.get(point.name)
            if reading is not None and reading.good:
                out[point.name] = self._check(point, reading)
        return out

    def _check(self, point: Point, reading: Reading) -> Reading:
        track = self._tracks.get(point.name)
        self._tracks[point.name] = _advance(track, reading)
        if track is None:
            return reading
        if _is_spike(point, track, reading):
            return _bad(reading, "spike")
        if _is_frozen(point, self._tracks[point.name], reading.ts_ms):
            return _bad(reading, "frozen")
        return reading


def _bad(reading: Reading, reason: str) -> Reading:
    # Built directly, not by dataclasses.replace: this runs per point per cycle (bench/endpoints.py).
    return Reading(value=reading.value, quality=Quality.BAD, ts_ms=reading.ts_ms, reason=reason)


def _advance(track: _Track | None, reading: Reading) -> _Track:
    if track is None or track.value != reading.value:
        return _Track(value=reading.value, since_ms=reading.ts_ms, last_ms=reading.ts_ms)
    return _Track(value=track.value, since_ms=track.since_ms, last_ms=reading.ts_ms)


def _is_spike(point: Point, track: _Track, reading: Reading) -> bool:
    if point.max_rate_per_s is None or isinstance(reading.value, bool) or track.value is None:
        return False
    dt_ms = reading.ts_ms - track.last_ms
    if dt_ms <= 0:
        return False
    delta = abs(float(reading.value) - float(track.value))  # type: ignore[arg-type]
    return delta * 1000.0 > point.max_rate_per_s * dt_ms


def _is_frozen(point: Point, track: _Track, now_ms: EpochMs) -> bool:
    return point.frozen_after_ms is not None and now_ms - track.since_ms >= point.frozen_after_ms


class InputView:
    """The journaled view: what the engine is fed, and which points changed this cycle."""

    def __init__(self, points: Sequence[Point]) -> None:
        self._points = tuple(points)
        self._last: dict[PointName, Reading] = {}

    def update(self, readings: Mapping[PointName, Reading], now_ms: EpochMs,
               *, keyframe: bool = False) -> tuple[dict[PointName, Reading], dict[PointName, Reading]]:
        """(view fed to the engine, changes to journal). A keyframe journals every point."""
        view: dict[PointName, Reading] = {}
        changes: dict[PointName, Reading] = {}
        for point in self._points:
            reading = readings.get(point.name)
            if reading is None:
                continue
            last = self._last.get(point.name)
            if keyframe or last is None or _changed(point, last, reading):
                self._last[point.name] = reading
                changes[point.name] = reading
                view[point.name] = reading
            else:
                view[point.name] = held(last, reading, now_ms)
        return view, changes

    def seed(self, readings: Mapping[PointName, Reading]) -> None:
        """Restore the view (after a restart the first cycle journals everything anyway)."""
        self._last = dict(readings)


def held(last: Reading, current: Reading, now_ms: EpochMs) -> Reading:
    """The last journaled reading carried forward: a GOOD one is fresh at `now_ms`; a BAD one keeps
    its original time (so stale guards still measure from the last good read)."""
    if last.quality is Quality.GOOD and current.quality is Quality.GOOD:
        if current.ts_ms == now_ms and _same(last.value, current.value):
            return current  # the very reading that would be built (no allocation per point per cycle)
        return Reading(value=last.value, quality=last.quality, ts_ms=now_ms, reason=last.reason)
    return last


def _same(a: Value | None, b: Value | None) -> bool:
    """Identical values: equal, of one type, and for a float zero of one sign (0.0 == -0.0)."""
    if a != b or type(a) is not type(b):
        return False
    if not isinstance(a, float) or not isinstance(b, float) or a != 0.0:
        return True
    return math.copysign(1.0, a) == math.copysign(1.0, b)


def _changed(point: Point, last: Reading, new: Reading) -> bool:
    if last.quality is not new.quality or last.reason != new.reason:
        return True
    if new.quality is not Quality.GOOD:
        return False
    if isinstance(new.value, bool) or isinstance(last.value, bool) or point.deadband == 0.0:
        return new.value != last.value
    return abs(float(new.value) - float(last.value)) > point.deadband  # type: ignore[arg-type]
