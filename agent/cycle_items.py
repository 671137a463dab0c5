"""What one scan cycle journals — pure: values in, typed journal items out.

Journal-first (invariant 4): every output change, step transition, guard trip, refused write,
command and contract change becomes an entry, all of one cycle in one transaction. The bodies are
the records of contracts/journal_events.py (the one definition of the format, which the replay
and the hub read back); this module only decides which of them a cycle writes, and in what order.
"""
from __future__ import annotations

from collections.abc import Mapping

from agent.faults import FaultWords
from contracts.engine import StepResult
from contracts.inputs import Inputs, Reading, reading_to_wire
from contracts.journal_events import (
    AdapterFaultBody, Body, CommandBody, ConnectivityBody, InputBody, Item, KeyframeBody,
    OutputBody, OverrunBody, engine_event_body, item,
)
from contracts.types import EpochMs, PointName

__all__ = ["Item", "cycle_items", "fault_item", "keyframe_item", "overrun_item"]


def _wire(readings: Mapping[PointName, Reading]) -> dict[PointName, list[object]]:
    return {name: reading_to_wire(r) for name, r in readings.items()}


def cycle_items(now_ms: EpochMs, changes: Mapping[PointName, Reading], inputs: Inputs,
                result: StepResult, *, connectivity_changed: bool) -> list[Item]:
    """Journal items for one cycle, in the order replay must apply them: connectivity, commands,
    inputs (what the engine saw), then what the engine did (events, writes)."""
    bodies: list[Body] = []
    if connectivity_changed:
        bodies.append(ConnectivityBody(online=inputs.online,
                                       last_contact_ms=inputs.last_contact_ms))
    bodies.extend(CommandBody(command=c) for c in inputs.commands)
    if changes:
        bodies.append(InputBody(values=_wire(changes)))
    bodies.extend(engine_event_body(e) for e in result.events)
    if result.writes:
        bodies.append(OutputBody(writes={w.point: w.value for w in result.writes}))
    return [item(b, now_ms) for b in bodies]


def keyframe_item(now_ms: EpochMs, view: Mapping[PointName, Reading], result: StepResult,
                  step_name: str | None) -> Item:
    """Every point's view, the commanded outputs, the mode and the step (once a minute)."""
    return item(KeyframeBody(values=_wire(view), outputs=dict(result.state.outputs),
                             mode=result.state.mode, step=step_name), now_ms)


def overrun_item(now_ms: EpochMs, late_ms: int, skipped: int, resume_ms: EpochMs) -> Item:
    return item(OverrunBody(late_ms=late_ms, skipped=skipped, resume_ms=resume_ms), now_ms)


def fault_item(now_ms: EpochMs, what: str, point: str | None, fault: FaultWords) -> Item:
    """An adapter fault of `point` (None: of no one point) in words, with its exception code."""
    return item(AdapterFaultBody(what=what, reason=fault.reason, code=fault.code, point=point),
                now_ms)
