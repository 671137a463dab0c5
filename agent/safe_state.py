"""Safe state as a fact on the device (invariant 8) — pure: read-backs in, what to write and what to
journal out.

Rules:
- Safe state is demanded while the engine holds its outputs at `safe_state` after a trip or an
  end (modes SAFE, ABORTED, FAILED, EXPIRED, COMPLETED), and while the journal is down (forced).
- A point is confirmed when its read-back is GOOD and shows the safe value within the point's
  resolution. Every point not confirmed by this cycle's read is written again in this cycle — so
  once per scan period, across reconnects — and, when a write was acknowledged, read back at once
  (`verify`), so confirmation does not wait a scan. Until all are confirmed, this repeats. Confirmation is re-judged every cycle: a
  second master (or a device reboot) that moves a point away opens a new unconfirmed episode, and
  safe state is asserted again: on the device, safe state wins.
- The journal records the attempt state, never one entry per cycle: EVENT `safe_unconfirmed`
  {points, since_ms, attempts} when an episode starts and whenever the set of unconfirmed points
  changes, and EVENT `safe_confirmed` {elapsed_ms, attempts} when it becomes empty. The first
  episode starts at the trip, so its elapsed_ms is trip → confirmed on the device, in scan-cycle
  time (a confirmation by `verify` in the trip's own cycle says 0).
- These are events about the device, not engine writes: replay ignores them (like `output_sync`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.readback import shows
from contracts.engine_state import LIVE, Mode
from contracts.inputs import Reading
from contracts.journal_events import AgentEvent, Item, agent_event_body, item
from contracts.schema import Point
from contracts.types import EpochMs, PointName, Value


SAFE_MODES = frozenset(Mode) - LIVE - {Mode.PENDING}
"""Modes whose outputs are held at safe_state (see contracts/engine_state.py)."""


@dataclass(frozen=True, kw_only=True)
class SafeView:
    """What status lines and telemetry say: `"unconfirmed"` or `"confirmed"`, and which points."""

    state: str
    unconfirmed: tuple[PointName, ...]
    since_ms: EpochMs


class SafeKeeper:
    """One segment's confirmation of its safe state on the device."""

    def __init__(self, points: Sequence[Point]) -> None:
        self._points = tuple(points)
        self.active = False
        self.since_ms: EpochMs = 0
        self.attempts = 0
        self.unconfirmed: tuple[PointName, ...] = ()

    def view(self) -> SafeView | None:
        """None unless safe state is demanded."""
        if not self.active:
            return None
        state = "unconfirmed" if self.unconfirmed else "confirmed"
        return SafeView(state=state, unconfirmed=self.unconfirmed, since_ms=self.since_ms)

    def leave(self) -> None:
        """Safe state is no longer demanded (an operator resume, a new segment)."""
        self.active, self.unconfirmed = False, ()

    def cycle(self, targets: Mapping[PointName, Value], readings: Mapping[PointName, Reading],
              now_ms: EpochMs) -> tuple[tuple[PointName, ...], list[Item]]:
        """(points to write now, journal items) for one cycle in safe state."""
        missing = self._unconfirmed(targets, readings)
        entered = not self.active
        if entered or (missing and not self.unconfirmed):  # a new unconfirmed episode starts now
            self.active, self.since_ms, self.attempts = True, now_ms, 0
        if missing:
            self.attempts += 1
        items = self._transition(missing, now_ms, entered)
        self.unconfirmed = missing
        return missing, items

    def verify(self, targets: Mapping[PointName, Value], readings: Mapping[PointName, Reading],
               now_ms: EpochMs) -> list[Item]:
        """Journal items after re-reading the points just written in this cycle: confirmation
        does not wait for the next cycle's read. Not an attempt; never opens an episode."""
        if not self.active or not self.unconfirmed:
            return []
        missing = self._unconfirmed(targets, readings)
        items = self._transition(missing, now_ms, False) if missing != self.unconfirmed else []
        self.unconfirmed = missing
        return items

    def _unconfirmed(self, targets: Mapping[PointName, Value],
                     readings: Mapping[PointName, Reading]) -> tuple[PointName, ...]:
        out = []
        for p in self._points:
            r = readings.get(p.name)
            if p.name in targets and (r is None or not r.good or not shows(p, targets[p.name], r.value)):
                out.append(p.name)
        return tuple(out)

    def _transition(self, missing: tuple[PointName, ...], now_ms: EpochMs, entered: bool) -> list[Item]:
        if missing and (entered or missing != self.unconfirmed):
            return [item(agent_event_body(AgentEvent.SAFE_UNCONFIRMED, points=list(missing),
                                          since_ms=self.since_ms, attempts=self.attempts), now_ms)]
        if not missing and (entered or self.unconfirmed):
            return [item(agent_event_body(AgentEvent.SAFE_CONFIRMED, elapsed_ms=now_ms - self.since_ms,
                                          attempts=self.attempts), now_ms)]
        return []
