"""Deadline scheduling for the scan loop — pure arithmetic plus one precise sleep.

Cycles run at t0 + k*period on the monotonic clock, never "period after the last cycle ended", so
the loop does not drift. The engine's time for cycle k is the wall-clock anchor t0_wall + k*period:
exact integers, identical in the journal and in a replay. If the loop falls more than one period
behind, it skips to the latest deadline that has passed (never runs a burst of stale cycles) and
journals the overrun.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

SPIN_S = 0.0012
"""asyncio sleeps through epoll, whose timeout is rounded up to whole milliseconds, so a plain sleep
wakes up to 1 ms late. We sleep to 1.2 ms before the deadline, then approach it in short blocking
sleeps (the thread sleeps; it does not spin). That holds the event loop for at most 1.2 ms per cycle
— the uplink and journal callbacks wait that long at worst — in exchange for sub-millisecond period
error at a fraction of the CPU a spin costs (bench/scan.py measures both)."""

FINE_SLEEP_S = 0.0002
"""One step of the final approach: Linux's default timer slack is 50 µs, so 200 µs steps land
within ~0.1 ms of the deadline."""


@dataclass(frozen=True, kw_only=True)
class Anchor:
    """Ties cycle numbers to both clocks. `wall_ms` is aligned to the period."""

    mono_s: float
    wall_ms: int
    period_ms: int

    def deadline(self, k: int) -> float:
        return self.mono_s + k * self.period_ms / 1000.0

    def wall(self, k: int) -> int:
        return self.wall_ms + k * self.period_ms

    def cycle_at(self, mono_s: float) -> int:
        """The latest cycle whose deadline is at or before `mono_s`."""
        return int((mono_s - self.mono_s) * 1000.0 // self.period_ms)


def make_anchor(period_ms: int, *, wall_ms: int | None = None, mono_s: float | None = None,
                phase_ms: int = 0) -> Anchor:
    """An anchor whose cycle 0 is the next period boundary of the wall clock, plus `phase_ms`
    (so cycle times are round numbers, and two agents with the same period tick on the same
    instants; several contracts on one agent tick at different phases: `free_phase`)."""
    wall_now = wall_ms if wall_ms is not None else time.time_ns() // 1_000_000
    mono_now = mono_s if mono_s is not None else time.monotonic()
    first = -(-(wall_now - phase_ms) // period_ms) * period_ms + phase_ms
    return Anchor(mono_s=mono_now + (first - wall_now) / 1000.0, wall_ms=first, period_ms=period_ms)


def free_phase(period_ms: int, taken: list[int]) -> int:
    """The phase (0..period_ms-1) farthest from the wall-clock times `taken` (other contracts'
    cycle times, modulo this period): the middle of the widest gap between them, 0 when none.
    Contracts sharing one device link take turns on it, so ticking apart keeps one from waiting
    out another's cycle at every deadline."""
    phases = sorted({t % period_ms for t in taken})
    if not phases:
        return 0
    gaps = [((phases[(i + 1) % len(phases)] - p) % period_ms or period_ms, p)
            for i, p in enumerate(phases)]
    width, start = max(gaps)
    return (start + width // 2) % period_ms


def plan_next(anchor: Anchor, k: int, now_mono: float) -> tuple[int, int]:
    """(cycle to run, cycles skipped). Skips when more than one whole period late."""
    latest = anchor.cycle_at(now_mono)
    if latest > k:
        return latest, latest - k
    return k, 0


async def sleep_until(deadline_mono: float) -> None:
    """Sleep until the monotonic deadline with sub-millisecond precision."""
    remaining = deadline_mono - time.monotonic()
    if remaining > SPIN_S:
        await asyncio.sleep(remaining - SPIN_S)
    while (left := deadline_mono - time.monotonic()) > 0:
        time.sleep(min(left, FINE_SLEEP_S))
