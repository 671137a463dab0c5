"""Reads shared by the contracts that tick together: one set of requests for all of them.

Rules (agent/scan.py asks this for every cycle's inputs):
- Contracts whose cycles fall on the same engine time T are *due together*. They are made to: a
  contract whose period divides, or is a multiple of, a running one's starts in that one's phase
  (`shared_phase`), so their deadlines coincide (every cycle of the slower one is a cycle of the
  faster one). Other periods keep apart (agent/timing.py `free_phase`).
- The first of them to run its cycle at T reads for all: the union of their points planned as one
  (agent/registers.py `plan_reads`: coalesced per (endpoint, unit, table)), each point under its
  contract's name (`contract/point`), so points of two contracts never mix, even under one name.
  Two contracts reading adjacent registers cost one request, not two.
- The other contracts' parts are *kept* for their own cycles at T. A kept part is used only by the
  segment it was read for, only for that T, and only if that segment ran no cycle since it was
  read: a cycle in between may have written, and a read-back taken before its write would look
  like a second writer (agent/readback.py). Otherwise it is dropped and the cycle reads itself.
- A shared request that the device answers with an exception (an address one of the contracts
  maps wrongly: exception 2 beside a good register) is read again at once, each contract's part of
  it by itself, and that group of contracts reads apart from then on (no request mixes them): one
  contract's bad register must never make another's points BAD (each would trip on it).
- Only cycle reads are shared. The read-back confirming a safe state at once (`_verify_safe`) and
  the forced safe hold read the device themselves, after their writes.
- Readings carry ts_ms = T, the engine time of every cycle that uses them (agent/link.py).
- A shared read is bounded by the first cycle's I/O deadline (`DeviceLink.pace`) like any read:
  a dead endpoint of one contract costs the others no more than its own cycle did, since their
  cycles waited for that one's turn on the link before (agent/scan.py `_io`); each endpoint
  stays its own failure domain (agent/endpoints.py), whichever contract's points it serves.
A contract due alone (one contract per agent, or at its own instants) reads its own plan as is.
"""
from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.link import DeviceLink
from agent.registers import ReadRequest, plan_reads
from agent.segment import Segment
from contracts.inputs import Reading
from contracts.schema import Point
from contracts.types import EpochMs, PointName

SEPARATOR = "/"
"""Between a contract id and its point's name in a shared request: point names never hold it
(contracts/schema.py NAME_RE), so `contract/point` names are unique across contracts."""


def shared_phase(period_ms: int, others: Iterable[tuple[int, int]]) -> int | None:
    """The phase (0..period_ms-1) that puts a new contract's cycles on the instants of a running
    one — given as (period_ms, wall_ms of a cycle) — whose period divides or is a multiple of
    `period_ms`; None when there is none (then agent/timing.py `free_phase` keeps them apart)."""
    for other_period, wall_ms in others:
        if other_period % period_ms == 0 or period_ms % other_period == 0:
            return wall_ms % min(period_ms, other_period)
    return None


def is_due(seg: Segment, now_ms: EpochMs) -> bool:
    """Whether engine time `now_ms` is one of `seg`'s cycle times."""
    a = seg.anchor
    return now_ms >= a.wall_ms and (now_ms - a.wall_ms) % a.period_ms == 0


@dataclass(frozen=True)
class _Kept:
    at_ms: EpochMs
    runs: int  # the segment's cycle count when it was read
    readings: dict[PointName, Reading]


@dataclass(frozen=True)
class _Tagged:
    points: tuple[Point, ...]  # the segment's planned points under `contract/point`
    names: Mapping[PointName, PointName]  # tagged name -> the contract's own


class CycleReads:
    """The cycle reads of every segment on one device link; see the module docstring."""

    def __init__(self, link: DeviceLink) -> None:
        self.link = link
        self.shared = 0  # cycles whose inputs came from another contract's read (for tests, bench)
        self._runs: weakref.WeakKeyDictionary[Segment, int] = weakref.WeakKeyDictionary()
        self._last: weakref.WeakKeyDictionary[Segment, EpochMs] = weakref.WeakKeyDictionary()
        self._kept: weakref.WeakKeyDictionary[Segment, _Kept] = weakref.WeakKeyDictionary()
        self._tags: weakref.WeakKeyDictionary[Segment, _Tagged] = weakref.WeakKeyDictionary()
        self._plans: dict[tuple[Segment, ...], tuple[ReadRequest, ...]] = {}
        self._apart: set[tuple[Segment, ...]] = set()  # groups a shared exception split up

    def wrote(self, seg: Segment) -> None:
        """`seg` may write to the device outside a read cycle (its outputs' sync at start, a
        forced safe hold): what was kept for it no longer shows the device."""
        self._runs[seg] = self._runs.get(seg, 0) + 1

    async def read(self, seg: Segment, now_ms: EpochMs, segments: Iterable[Segment]
                   ) -> dict[PointName, Reading]:
        """`seg`'s inputs at `now_ms`: kept for it by a contract due at the same time, or read
        now together with every other segment in `segments` due then and not run yet."""
        kept = self._kept.pop(seg, None)
        runs = self._runs.get(seg, 0)
        self._runs[seg], self._last[seg] = runs + 1, now_ms
        if kept is not None and kept.at_ms == now_ms and kept.runs == runs:
            self.shared += 1
            return kept.readings
        group = [seg, *(s for s in segments if s is not seg and self._waits(s, now_ms))]
        if len(group) == 1:
            return await self.link.read(seg.plan, now_ms)
        plan = self._plan(group)
        raw = await self._apart_on_exception(group, plan, await self.link.read(plan, now_ms), now_ms)
        for other in group[1:]:
            self._kept[other] = _Kept(now_ms, self._runs.get(other, 0), self._untag(other, raw))
        return self._untag(seg, raw)

    def _waits(self, seg: Segment, now_ms: EpochMs) -> bool:
        """Due at `now_ms`, not run at it yet, and not holding a forced safe state."""
        return (seg.forced_safe is None and is_due(seg, now_ms)
                and self._last.get(seg, -1) < now_ms)

    async def _apart_on_exception(self, group: Sequence[Segment], plan: Sequence[ReadRequest],
                                  raw: dict[PointName, Reading], now_ms: EpochMs
                                  ) -> dict[PointName, Reading]:
        """`raw` with each request of several contracts that answered an exception read again,
        every contract's part by itself; the group reads apart from then on (module docstring)."""
        if not any(r.reason is not None and r.reason.startswith("exception") for r in raw.values()):
            return raw  # the usual case, every shared cycle: nothing to split
        parts: dict[str, list[Point]] = {}
        for request in plan:
            owners = {_owner(p) for p in request.points}
            if len(owners) > 1 and any((r := raw.get(p.name)) is not None
                                       and (r.reason or "").startswith("exception")
                                       for p in request.points):
                for p in request.points:
                    parts.setdefault(_owner(p), []).append(p)
        if not parts:
            return raw
        key = tuple(group)
        self._apart.add(key)
        self._plans.pop(key, None)
        again = tuple(q for points in parts.values() for q in plan_reads(points))
        return {**raw, **await self.link.read(again, now_ms)}

    def _plan(self, group: Sequence[Segment]) -> tuple[ReadRequest, ...]:
        key = tuple(group)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 64:  # segments come and go; a plan is cheap to make again
                self._plans.clear()
                self._apart.clear()
            if key in self._apart:
                plan = tuple(q for s in group for q in plan_reads(self._tag(s).points))
            else:
                plan = plan_reads(p for s in group for p in self._tag(s).points)
            self._plans[key] = plan
        return plan

    def _tag(self, seg: Segment) -> _Tagged:
        tagged = self._tags.get(seg)
        if tagged is None:
            points = [p for request in seg.plan for p in request.points]
            renamed = tuple(dataclasses.replace(p, name=f"{seg.key}{SEPARATOR}{p.name}")
                            for p in points)
            tagged = self._tags[seg] = _Tagged(
                points=renamed, names={t.name: p.name for t, p in zip(renamed, points)})
        return tagged

    def _untag(self, seg: Segment, raw: Mapping[PointName, Reading]) -> dict[PointName, Reading]:
        return {own: raw[tagged] for tagged, own in self._tag(seg).names.items() if tagged in raw}


def _owner(point: Point) -> str:
    """The contract id a tagged point (`contract/point`) was read for."""
    return point.name.partition(SEPARATOR)[0]
