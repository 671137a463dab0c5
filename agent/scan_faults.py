"""What the scan loop (agent/scan.py) does when a cycle cannot run as planned: the journal cannot
commit (outputs forced to safe state until it recovers), or the loop missed deadlines (overrun).

Rules:
- Journal first forbids acting on what cannot be recorded. When an append fails (disk full, I/O
  error) the segment's outputs go to its safe_state, written directly and re-asserted every period
  until the read-back confirms them (`Actuator.hold_forced`); the engine stops advancing. Nothing
  can be journaled meanwhile: `Segment.forced_safe` {since_ms, error, writes, confirmed_ms} records
  the outage, and is journaled as JOURNAL_RECOVERED once a probe append commits again.
- Recovery starts a new segment from the engine's (frozen) state, so replay treats the outage as
  a gap between segments.
- An overrun (a cycle started so late that whole periods were skipped) is journaled with how late
  and how many were skipped, and counted in the loop's stats.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from agent.errors import JournalError
from agent.cycle_items import overrun_item
from agent.scan_report import ScanStats
from agent.segment import Segment
from agent.timing import Anchor
from contracts.journal_events import AgentEvent, agent_event_body, item
from contracts.types import EpochMs

log = logging.getLogger("fieldpact.agent.scan")

MAX_ERROR_CHARS = 300
"""How much of the journal's error `forced_safe` keeps: a bounded piece of it (invariant 10)."""


async def journal_down(seg: Segment, exc: JournalError, now_ms: EpochMs) -> None:
    """The journal cannot commit: force `seg`'s outputs to safe_state (once; see the rules)."""
    if seg.forced_safe is not None:
        return
    log.critical("journal_unavailable error=%s: outputs forced to safe_state", exc)
    seg.forced_safe = {"since_ms": now_ms, "error": str(exc)[:MAX_ERROR_CHARS], "writes": {}}
    await hold_forced_safe(seg, now_ms)


async def hold_forced_safe(seg: Segment, now_ms: EpochMs) -> None:
    """One period of forced safe state: read back, re-write what is not confirmed."""
    assert seg.forced_safe is not None
    await seg.actuator.hold_forced(seg.journal, seg.plan, seg.write_plan, seg.forced_safe, now_ms)


async def try_recover(seg: Segment, now_ms: EpochMs,
                      restart: Callable[[Segment], Awaitable[bool]]) -> bool:
    """Probe the journal; once it commits again, record the outage and `restart` the segment
    (a new one from the engine's frozen state). Returns whether the journal is back."""
    try:
        await seg.journal.append_many([item(agent_event_body(
            AgentEvent.JOURNAL_RECOVERED, **(seg.forced_safe or {})), now_ms)])
        await restart(seg)
    except JournalError:
        return False
    log.warning("journal_recovered down_since_ms=%s", (seg.forced_safe or {}).get("since_ms"))
    return True


async def journal_overrun(seg: Segment, anchor: Anchor, k: int, run_k: int, now_mono: float,
                          stats: ScanStats) -> None:
    """Cycle `k` was due, cycle `run_k` runs: journal the overrun and count it in `stats`.
    Raises JournalError when the journal cannot commit (the caller forces safe state)."""
    late_ms = int((now_mono - anchor.deadline(k)) * 1000)
    await seg.journal.append_many([overrun_item(anchor.wall(k), late_ms, run_k - k,
                                                anchor.wall(run_k))])
    stats.overran(run_k - k)
    log.warning("scan_overrun late_ms=%s skipped=%s", late_ms, run_k - k)
