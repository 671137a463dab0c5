"""What one scan cycle writes to the journal — pure: values in, journal items out.

Journal-first (invariant 4): every output change, step transition, guard trip, refused write,
command and contract change becomes an entry, all of one cycle in one transaction. The entry bodies
below are the format `agent/replay_journal.py` and the hub read back; change them together.

    BOOT       {boot_id, t0_ms, period_ms, contract, version, hash, state}   a scan segment starts
    INPUT      {values: {name: [value, quality, reason]}}                    journaled view changed
    KEYFRAME   {values: {...every point...}, outputs: {...}, mode, step}
    OUTPUT     {writes: {name: value}}                                      engine writes this cycle
    STEP       {event, step, index, ...}          STEP_ENTERED / STEP_DONE / STEP_TIMEOUT / COMPLETED
    TRIP       {event, reason, point, ...}        GUARD_TRIP / SAFE_STATE / AUTONOMY_EXHAUSTED / EXPIRED
    REFUSAL    {event, point, reason, ...}        WRITE_REFUSED / COMMAND_REFUSED / contract refused
    EVENT      {event, ...}                       every other engine event
    COMMAND    {kind, id, point, value}           a hub command consumed by the engine this cycle
    CONNECTIVITY {online, last_contact_ms}
    ADAPTER_FAULT {category: "adapters", what, point?, reason}
    OVERRUN    {late_ms, skipped, resume_ms}      stamped at the first missed deadline; the loop
                                                  resumed at resume_ms
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.inputs import reading_to_wire
from contracts.chain import EntryKind
from contracts.engine import Event, EventKind, StepResult
from contracts.inputs import Command, Inputs, Reading
from contracts.types import EpochMs, PointName

Item = tuple[EntryKind, dict[str, Any], EpochMs]

_STEP_EVENTS = frozenset({
    EventKind.STARTED, EventKind.STEP_ENTERED, EventKind.STEP_DONE, EventKind.STEP_TIMEOUT,
    EventKind.COMPLETED, EventKind.FAILED,
})
_TRIP_EVENTS = frozenset({
    EventKind.GUARD_TRIP, EventKind.SAFE_STATE, EventKind.AUTONOMY_EXHAUSTED, EventKind.EXPIRED,
    EventKind.ENGINE_ERROR,
})
_REFUSAL_EVENTS = frozenset({EventKind.WRITE_REFUSED, EventKind.COMMAND_REFUSED})


def event_kind(event: Event) -> EntryKind:
    """The journal entry kind for an engine event."""
    if event.kind in _STEP_EVENTS:
        return EntryKind.STEP
    if event.kind in _TRIP_EVENTS:
        return EntryKind.TRIP
    if event.kind in _REFUSAL_EVENTS:
        return EntryKind.REFUSAL
    return EntryKind.EVENT


def event_body(event: Event) -> dict[str, Any]:
    body: dict[str, Any] = {"event": event.kind.value}
    body.update({k: v for k, v in event.fields})
    return body


def command_body(command: Command) -> dict[str, Any]:
    return {"kind": command.kind.value, "id": command.id, "point": command.point,
            "value": command.value}


def values_body(readings: Mapping[PointName, Reading]) -> dict[str, Any]:
    return {"values": {name: reading_to_wire(r) for name, r in readings.items()}}


def cycle_items(now_ms: EpochMs, changes: Mapping[PointName, Reading], inputs: Inputs,
                result: StepResult, *, connectivity_changed: bool) -> list[Item]:
    """Journal items for one cycle, in the order replay must apply them: connectivity, commands,
    inputs (what the engine saw), then what the engine did (events, writes)."""
    items: list[Item] = []
    if connectivity_changed:
        items.append((EntryKind.CONNECTIVITY, {"online": inputs.online,
                                               "last_contact_ms": inputs.last_contact_ms}, now_ms))
    items.extend((EntryKind.COMMAND, command_body(c), now_ms) for c in inputs.commands)
    if changes:
        items.append((EntryKind.INPUT, values_body(changes), now_ms))
    items.extend((event_kind(e), event_body(e), now_ms) for e in result.events)
    if result.writes:
        items.append((EntryKind.OUTPUT, {"writes": {w.point: w.value for w in result.writes}},
                      now_ms))
    return items


def keyframe_item(now_ms: EpochMs, view: Mapping[PointName, Reading], result: StepResult,
                  step_name: str | None) -> Item:
    body = values_body(view)
    body.update(outputs=dict(result.state.outputs), mode=result.state.mode.value, step=step_name)
    return (EntryKind.KEYFRAME, body, now_ms)


def overrun_item(now_ms: EpochMs, late_ms: int, skipped: int, resume_ms: EpochMs) -> Item:
    return (EntryKind.OVERRUN, {"late_ms": late_ms, "skipped": skipped, "resume_ms": resume_ms},
            now_ms)


def fault_item(now_ms: EpochMs, what: str, reason: str, point: str | None = None) -> Item:
    return (EntryKind.ADAPTER_FAULT, {"category": "adapters", "what": what, "reason": reason,
                                      "point": point}, now_ms)
