"""Read-back of written points: what the device acknowledged, and a second Modbus master — pure.

Modbus has no authentication: another master (an HMI, a forgotten SCADA poll, a technician's laptop)
can write our points (DESIGN pitfall "Modbus has no authentication"). Every owned write point is
read back each cycle and judged against what the device *applied*, never against what the engine
commanded:
- a write the device acknowledged becomes the applied value;
- a write that failed before reaching the device ("disconnected", an exception response) changes
  nothing: the device still holds the previously applied value, and showing it is no divergence;
- a write that timed out may or may not have landed (DESIGN pitfall): the point is uncertain, and
  its next good read-back is taken as the applied value without judging it;
- before anything was applied (segment start) the first good read-back is the baseline.
A read-back that differs (beyond the point's resolution) from the applied value is a second writer,
journaled once when it starts and once when it clears. Read-backs are judged before this cycle's
writes, so they show the device after the previous cycle's writes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from contracts.inputs import Reading
from contracts.outputs import within_resolution
from contracts.schema import Point
from contracts.types import PointName, Value


@dataclass(frozen=True, kw_only=True)
class Divergence:
    point: PointName
    expected: Value
    actual: Value | None
    cleared: bool = False


def shows(point: Point, expected: Value, actual: Value | None) -> bool:
    """Whether a read-back shows `expected`: bools exactly, numbers within half a raw step."""
    return actual is not None and within_resolution(abs(point.scale), expected, actual)


class ReadbackMonitor:
    def __init__(self, write_points: Sequence[Point]) -> None:
        self._points = tuple(write_points)
        self._applied: dict[PointName, Value] = {}
        self._uncertain: set[PointName] = set()
        self._diverged: set[PointName] = set()

    def acknowledged(self, name: PointName, value: Value) -> None:
        """The device acknowledged our write of `value`."""
        self._applied[name] = value
        self._uncertain.discard(name)

    def failed(self, name: PointName, reason: str) -> None:
        """Our write failed with `reason`; only a timeout leaves the outcome open."""
        if reason == "timeout":
            self._uncertain.add(name)

    def applied(self, name: PointName) -> Value | None:
        return None if name in self._uncertain else self._applied.get(name)

    def check(self, readings: Mapping[PointName, Reading]) -> list[Divergence]:
        """New divergences and clearances this cycle. Points whose read-back failed (bad quality:
        the adapter already journals that) are not judged."""
        out: list[Divergence] = []
        for p in self._points:
            r = readings.get(p.name)
            if r is None or not r.good:
                continue
            expected = self.applied(p.name)
            if expected is None:  # nothing known to be applied yet: the device's value is it
                self._applied[p.name] = r.value  # type: ignore[assignment]
                self._uncertain.discard(p.name)
                continue
            out += self._judge(p, expected, r.value)
        return out

    def _judge(self, p: Point, expected: Value, actual: Value | None) -> list[Divergence]:
        same = shows(p, expected, actual)
        if not same and p.name not in self._diverged:
            self._diverged.add(p.name)
            return [Divergence(point=p.name, expected=expected, actual=actual)]
        if same and p.name in self._diverged:
            self._diverged.discard(p.name)
            return [Divergence(point=p.name, expected=expected, actual=actual, cleared=True)]
        return []

    @property
    def diverged(self) -> frozenset[PointName]:
        return frozenset(self._diverged)
