"""A reconciled outage's value trajectories — pure: what the projection said each read point would
do, against what the device's journal says it did, sampled for a chart (the fleet view draws them,
hub/static/chart.js).

Rules:
- Projected: the projection's recorded points (every hub.projector.SAMPLE_MS and at each event)
  inside [from_ms, to_ms], then the value at to_ms, interpolated between the samples around it
  (the model is linear between samples unless a range clamps it); thinned evenly to MAX_SAMPLES.
  A chart joins them with straight lines.
- Actual: the journal's good readings as the outage is folded (hub/actual_history.py calls `Trail`
  with each entry): the values in force at the first entry at or after each sample time. The
  interval starts at MIN_STEP_MS; whenever more than 2 * MAX_SAMPLES are held, every other one is
  dropped and the interval becomes that of those kept (at least twice what it was): a day-long outage costs the fold one comparison per entry and keeps
  between MAX_SAMPLES and 2 * MAX_SAMPLES. The values at to_ms close it. A reading holds until
  the next entry changes it, so a chart draws the actual in steps.
- Charted: the numeric read points (not bools), those `expect` models first, at most MAX_POINTS;
  each with its unit (`points[].unit`, None when it has none) and `modelled`.
- The report keeps them (`trajectory`), so the page needs nothing but the report: no journal
  read, no engine run, however old the outage.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from contracts.projection import Projection, ProjectionPoint
from contracts.schema import Contract, DataType, Point
from contracts.types import EpochMs, Value

MAX_SAMPLES = 200
"""Samples per line: more than a 960-pixel-wide chart needs to show its shape (a sample every ~5
pixels), and few enough that a report stays tens of kB (MAX_POINTS x 3 x MAX_SAMPLES pairs)."""
MAX_POINTS = 6
"""Points charted per report: the modelled ones come first, and a screen shows about that many."""
MIN_STEP_MS = 100
"""The actual samples' first interval: a typical scan period; a short outage is sampled finely."""

T = TypeVar("T")
Sample = list[Any]
"""[ts_ms, value]: the JSON shape of a sample (as in GET /api/devices/{id}/series)."""


class Trail:
    """The actual values sampled as the outage's entries are folded (module rules)."""

    __slots__ = ("step_ms", "next_ms", "samples")

    def __init__(self) -> None:
        self.step_ms = MIN_STEP_MS
        self.next_ms: EpochMs = -(2**63)
        """The fold calls `take` for the first entry at or after this (a comparison per entry)."""
        self.samples: list[tuple[EpochMs, dict[str, Value]]] = []

    def take(self, ts_ms: EpochMs, values: Mapping[str, Value]) -> None:
        """The values in force at `ts_ms` (an entry at or after `next_ms`)."""
        self.samples.append((ts_ms, dict(values)))
        if len(self.samples) > 2 * MAX_SAMPLES:
            kept = self.samples = self.samples[::2]  # an odd count: the newest is kept
            # new samples as far apart as the kept ones (entries may be sparser than the step)
            self.step_ms = max(2 * self.step_ms, (kept[-1][0] - kept[0][0]) // (len(kept) - 1))
        self.next_ms = ts_ms + self.step_ms


def charted(contract: Contract) -> list[Point]:
    """The points a trajectory draws: numeric read points, the modelled ones first, by name."""
    modelled = {e.point for e in contract.expect}
    numeric = [p for p in contract.read_points if p.type is not DataType.BOOL
               and not p.table.is_bit]
    return sorted(numeric, key=lambda p: (p.name not in modelled, p.name))[:MAX_POINTS]


def trajectory(contract: Contract, projection: Projection, trail: Trail,
               final: Mapping[str, Value], from_ms: EpochMs, to_ms: EpochMs) -> list[dict[str, Any]]:
    """Per charted point: `{point, unit, modelled, projected: [[ts, v]], actual: [[ts, v]]}`;
    `final` is the actual values at to_ms (the fold's last)."""
    modelled = {e.point for e in contract.expect}
    inside = [p for p in projection.points if from_ms <= p.ts_ms <= to_ms]
    after = next((p for p in projection.points if p.ts_ms > to_ms), None)
    points = thin(inside, MAX_SAMPLES - 1)  # one place left for the value at to_ms
    out = []
    for point in charted(contract):
        name = point.name
        projected: list[Sample] = [[p.ts_ms, _number(_value(p, name))] for p in points]
        end = _at(name, inside[-1] if inside else None, after, to_ms)
        if end is not None and (not projected or projected[-1][0] < to_ms):
            projected.append([to_ms, end])
        actual: list[Sample] = [[ts, _number(values.get(name))] for ts, values in trail.samples
                                if from_ms <= ts < to_ms]
        if name in final:
            actual.append([to_ms, _number(final[name])])
        out.append({"point": name, "unit": point.unit or None, "modelled": name in modelled,
                    "projected": thin([s for s in projected if s[1] is not None]),
                    "actual": thin([s for s in actual if s[1] is not None], 2 * MAX_SAMPLES)})
    return out


def thin(samples: Sequence[T], most: int = MAX_SAMPLES) -> list[T]:
    """At most `most` of `samples`, evenly spread, the first and the last kept."""
    if len(samples) <= most:
        return list(samples)
    last = len(samples) - 1
    return [samples[round(i * last / (most - 1))] for i in range(most)]


def _at(name: str, before: ProjectionPoint | None, after: ProjectionPoint | None,
        ts_ms: EpochMs) -> float | None:
    """The projected value of `name` at `ts_ms`, between the samples around it."""
    a = _number(_value(before, name)) if before else None
    b = _number(_value(after, name)) if after else None
    if a is None or b is None or before is None or after is None:
        return a if a is not None else b
    return a + (b - a) * (ts_ms - before.ts_ms) / (after.ts_ms - before.ts_ms)


def _value(p: ProjectionPoint, name: str) -> Value | None:
    for n, v in p.modelled:  # a few read points: a scan beats building a dict per sample
        if n == name:
            return v
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None
