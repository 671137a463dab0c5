"""A segment's outputs on the device, as the scan loop (agent/scan.py) puts them there: the
cycle's commit and writes, the read-back that confirms a safe state at once, the engine-state
checkpoint, and the sync of the outputs when a segment starts.

Rules:
- Journal first: a cycle's items are committed in one transaction before anything is written;
  the engine's writes are never retried blindly (a failed write is journaled, and the next
  read-back shows what happened); what agent/actuation.py adds (safe state re-asserted until the
  read-back confirms it, every output re-asserted after a link loss) is journaled as events.
- A safe state re-asserted and acknowledged in a cycle is read back in that same cycle, so its
  confirmation (journaled) does not wait for the next one.
- The engine state is checkpointed only when it changed, without `last_ms` (see `checkpoint`).
- At a segment's start the device holds whatever it held: the engine's outputs are asserted once,
  journaled as an OUTPUT_SYNC event (not as engine writes, so replay stays exact), and read back
  at once, so a contract just installed (a rollback's known-good) is confirmed on the device one
  Modbus round trip later instead of a period later, and a second writer shows before its first
  cycle.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from agent.actuation import divergence_items
from agent.journal_thread import AsyncJournal
from agent.link import DeviceLink
from agent.segment import Segment, checkpoint_name, encode_checkpoint
from contracts.engine import EngineState, StepResult
from contracts.journal_events import AgentEvent, Item, agent_event_body, item
from contracts.types import EpochMs


async def commit_and_write(seg: Segment, items: list[Any], result: StepResult, extra: list[str],
                           now_ms: EpochMs) -> list[str]:
    """Journal the cycle's `items`, take the engine's new state, then write the engine's writes
    and the actuator's `extra` points. Returns the points the device acknowledged."""
    if items:
        await seg.journal.append_many(items)
    seg.state = result.state
    engine = [w.point for w in result.writes]
    return await seg.actuator.write(seg.journal, engine, extra, dict(result.state.outputs),
                                    now_ms)


async def verify_safe(seg: Segment, link: DeviceLink, acked: list[str], targets: dict[str, Any],
                      now_ms: EpochMs) -> None:
    """Safe state re-asserted and acknowledged this cycle: read it back at once, so the
    confirmation (journaled) does not wait for the next cycle."""
    act = seg.actuator
    if not act.verifying or not any(n in act.keeper.unconfirmed for n in acked):
        return
    raw = await link.read(seg.write_plan, now_ms)
    await _append(seg, act.verify(raw, now_ms, targets))


async def checkpoint(seg: Segment, journal: AsyncJournal, state: EngineState,
                     now_ms: EpochMs) -> None:
    """Persist the engine state when it changed. `last_ms` is left out: it moves every cycle,
    and a restored one would let a rate-limited ramp jump by the whole downtime on the first
    cycle after a restart (with none, the engine holds ramps for that cycle)."""
    state = replace(state, last_ms=None)
    if state == seg.checkpointed:
        return
    await journal.save_checkpoint_at_head(checkpoint_name(seg.key),
                                          encode_checkpoint(seg.active.hash, state), now_ms)
    seg.checkpointed = state


async def sync_outputs(seg: Segment, link: DeviceLink, now_ms: EpochMs) -> None:
    """At a segment's start, assert the engine's outputs once and read them back (see the rules)."""
    outputs = dict(seg.state.outputs)
    await seg.journal.append_many([item(agent_event_body(AgentEvent.OUTPUT_SYNC, writes=outputs),
                                        now_ms)])
    await seg.actuator.write(seg.journal, list(outputs), [], outputs, now_ms)
    if outputs:
        raw = await link.read(seg.write_plan, now_ms)
        await _append(seg, divergence_items(seg.actuator.readback.check(raw), now_ms))


async def _append(seg: Segment, items: list[Item]) -> None:
    if items:
        await seg.journal.append_many(items)
