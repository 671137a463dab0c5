"""Scan cycles proven by the journal: the counting rule of the health gate `cycles` — pure.

Cycle k of a segment runs at engine time t0 + k*period
(its BOOT's `t0_ms`, `period_ms`: agent/timing.py), and every entry a cycle writes is stamped with
that time. So an entry of the contract stamped on that grid proves cycle k = (ts - t0) / period
ran, and with it every earlier cycle but those an OVERRUN entry declares skipped (it is stamped at
the first skipped cycle, `skipped` cycles before `resume_ms`, the cycle that runs next). Entries
come on change and a KEYFRAME at cycle 0 and then once a minute, so the proof can lag the device
by up to a minute for a process at rest. Off the grid, or not a cycle's (the BOOT itself, CONTRACT
entries, a GAP, the segment's `output_sync` written before cycle 0), an entry proves no cycle.
Cycles inside the window = over every segment of the contract with that hash (an agent restart
starts a new one): (latest proven k before the window's end) + 1 - skipped cycles up to it. An
entry without the `of` tag belongs to the latest BOOT (contracts/journal_events.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.journal_events import AgentEvent, OverrunBody
from contracts.rollout_spec import Evidence
from contracts.types import EpochMs

__all__ = ["Run"]

_NOT_A_CYCLE = frozenset({AgentEvent.OUTPUT_SYNC.value})
"""Stamped at t0 but written before cycle 0 runs (the segment's first assertion of its outputs)."""


@dataclass
class Run:
    """One segment of the judged contract: a BOOT with its hash, and the cycles proven since."""

    boot: Evidence
    t0_ms: EpochMs
    period_ms: int
    k_max: int = -1                      # the latest cycle an entry proves ran
    skipped: list[tuple[int, int]] = field(default_factory=list)  # [k_from, k_to) overruns

    def note(self, ts_ms: EpochMs, body: Any) -> None:
        if isinstance(body, OverrunBody):  # stamped at the first skipped cycle; resumes after
            resume = (body.resume_ms - self.t0_ms) // self.period_ms
            self.skipped.append((resume - body.skipped, resume))
            self.k_max = max(self.k_max, resume)
            return
        if getattr(body, "event", None) in _NOT_A_CYCLE:
            return
        offset = ts_ms - self.t0_ms
        if offset >= 0 and offset % self.period_ms == 0:
            self.k_max = max(self.k_max, offset // self.period_ms)

    def cycles_before(self, end_ms: EpochMs) -> int:
        """Cycles proven run whose time is before `end_ms`."""
        last = min(self.k_max, -(-(end_ms - self.t0_ms) // self.period_ms) - 1)
        if last < 0:
            return 0
        skipped = sum(max(0, min(hi, last + 1) - max(lo, 0)) for lo, hi in self.skipped)
        return max(0, last + 1 - skipped)
