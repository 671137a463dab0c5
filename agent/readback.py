"""Read-back of written points: detect a second Modbus master — pure.

Modbus has no authentication: another master (an HMI, a forgotten SCADA poll, a technician's laptop)
can write our points. Every write point is read back each cycle; once our write has had a cycle to
land, a read-back that differs from what we commanded is a divergence, alarmed (journaled) once
when it starts and once when it clears (DESIGN pitfall "Modbus has no authentication").
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from contracts.inputs import Reading
from contracts.schema import Point
from contracts.types import PointName, Value


@dataclass(frozen=True, kw_only=True)
class Divergence:
    point: PointName
    expected: Value
    actual: Value | None
    cleared: bool = False


def _equal(point: Point, expected: Value, actual: Value | None) -> bool:
    if actual is None:
        return False
    if isinstance(expected, bool) or isinstance(actual, bool):
        return bool(expected) == bool(actual)
    # Integer registers hold raw = (value - offset) / scale rounded: accept half a raw step.
    return abs(float(expected) - float(actual)) <= abs(point.scale) / 2 + 1e-9


class ReadbackMonitor:
    def __init__(self, write_points: Sequence[Point]) -> None:
        self._points = tuple(write_points)
        self._diverged: set[PointName] = set()

    def check(self, outputs: Mapping[PointName, Value], readings: Mapping[PointName, Reading],
              just_written: Iterable[PointName]) -> list[Divergence]:
        """New divergences and clearances this cycle. Points written this cycle, and points whose
        read-back failed (bad quality: the adapter already journals that), are not judged."""
        skip = set(just_written)
        out: list[Divergence] = []
        for p in self._points:
            r = readings.get(p.name)
            if p.name in skip or p.name not in outputs or r is None or not r.good:
                continue
            same = _equal(p, outputs[p.name], r.value)
            if not same and p.name not in self._diverged:
                self._diverged.add(p.name)
                out.append(Divergence(point=p.name, expected=outputs[p.name], actual=r.value))
            elif same and p.name in self._diverged:
                self._diverged.discard(p.name)
                out.append(Divergence(point=p.name, expected=outputs[p.name], actual=r.value,
                                      cleared=True))
        return out

    @property
    def diverged(self) -> frozenset[PointName]:
        return frozenset(self._diverged)
