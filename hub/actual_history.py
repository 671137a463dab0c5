"""The device's actual history during an outage, folded from its journal — pure.

`Actual` is what reconciliation (hub/reconcile.py) compares with the projection: the steps the
device entered and when, the step and mode it is in now, its last commanded outputs, its last good
modelled inputs, the faults and the trip that latched it, and the values sampled for the fleet
view's chart (hub/trajectory.py `Trail`).

Rules:
- A left fold: folding a journal batch by batch gives what folding it at once gives, so the sync
  side folds as entries arrive (hub/offline.py) and reconciles when the journal has caught up.
- The journal is device input: a body that does not decode is counted (`unreadable`) and passed
  by, never a fact about the run; only good readings update the values.
- A keyframe (once a minute) names the step and mode even when no step was entered during the
  outage; a trip event without a `reason` takes the one its event implies (`_TRIP_EVENTS`).
- Most of a day's entries are all-good INPUT rows: they are read without building the typed record.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts.chain import Entry, EntryKind, checked_entry
from contracts.chain_rows import Row
from contracts.codec import loads_maps
from contracts.engine_modes import mode_after
from contracts.engine_state import EventKind, Mode
from contracts.guards import TripReason
from contracts.inputs import reading_from_wire
from contracts.journal_events import (
    AdapterFaultBody, BodyError, EventBody, InputBody, KeyframeBody, Occurrence, OutputBody,
    CONTRACT_TAG, TAGGED_VERSION, VERSION_KEY, RefusalBody, StepBody, TripBody, WireReading,
    belongs_to, decode_entry,
)
from contracts.types import EpochMs, Value
from hub.trajectory import Trail


@dataclass(frozen=True, kw_only=True)
class StepMark:
    step: str
    ts_ms: EpochMs


@dataclass(kw_only=True)
class Actual:
    steps: list[StepMark] = field(default_factory=list)
    step: str | None = None  # the latest step known: entered, or named by a keyframe
    mode: Mode | None = None
    outputs: dict[str, Value] = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    trip: str | None = None
    unreadable: int = 0  # entries whose body does not decode (device input): passed by
    trail: Trail = field(default_factory=Trail)  # values sampled for the chart (hub/trajectory.py)


_TRIP_EVENTS: dict[EventKind, TripReason | None] = {
    EventKind.GUARD_TRIP: None, EventKind.AUTONOMY_EXHAUSTED: TripReason.AUTONOMY,
    EventKind.ENGINE_ERROR: TripReason.ENGINE_ERROR}
"""Trip events and the reason to use when the body carries none: AUTONOMY_EXHAUSTED has no
`reason` field, and the budget running out is a network failure."""


def actual_from_entries(entries: Sequence[Entry]) -> Actual:
    """Fold journal entries (seq order) into the device's actual history."""
    return fold_entries(Actual(), entries)


def fold_entries(a: Actual, entries: Sequence[Entry]) -> Actual:
    """Fold more entries (seq order, following those already folded) into `a`; returns it. A
    left fold: folding a journal batch by batch gives what folding it at once gives."""
    trail = a.trail
    for e in entries:
        _fold(a, e)
        if e.ts_ms >= trail.next_ms:
            trail.take(e.ts_ms, a.values)
    return a


def fold_rows(a: Actual, rows: Sequence[Row], contract: str | None = None) -> Actual:
    """`fold_entries` over stored rows (hub/store/journal.py `stored`), only those that can be
    part of `contract`'s run when one is named (journal_events.belongs_to: several contracts per
    agent). The bodies are decoded strictly here, where they are read (all of a batch through one
    decoder, contracts.codec.loads_maps); one that does not decode is counted as unreadable. An
    all-good INPUT row, most of a day's, is folded from its body without an Entry."""
    values, trail, input_kind, tag_key = a.values, a.trail, EntryKind.INPUT, CONTRACT_TAG
    for row, body in zip(rows, loads_maps([r.body for r in rows]), strict=True):
        if body is None:
            a.unreadable += 1
            continue
        good = _good_inputs(body) if row.kind is input_kind else None
        if good is not None:  # its tag, if any, is a str (belongs_to of an INPUT row)
            tag = body.get(tag_key)
            if contract is not None and tag is not None and tag != contract:
                continue
            values.update(good)
        else:
            e = checked_entry(row.seq, row.ts_ms, row.kind, body, row.prev_hash, row.hash)
            if contract is not None and not belongs_to(e, contract):
                continue
            _fold(a, e)
        if row.ts_ms >= trail.next_ms:
            trail.take(row.ts_ms, values)
    return a


def _good_inputs(body: dict[str, Any]) -> dict[str, Any] | None:
    """name -> value of an INPUT body `{"values": {name: [value, "good", None]}}` (with or without
    its contract tag) whose readings are all good — what `_fold` takes from it, without building
    the typed record (most of a day's 86,400 entries). None for any other body: the full decode
    decides."""
    tagged = CONTRACT_TAG in body  # a tagged body is of version 2 (contracts/journal_events.py)
    if len(body) != 1 + 2 * tagged or (tagged and (type(body[CONTRACT_TAG]) is not str
                                                   or body.get(VERSION_KEY) != TAGGED_VERSION)):
        return None
    values = body.get("values")
    if type(values) is not dict:
        return None
    out = {}
    for name, w in values.items():
        if (type(name) is not str or type(w) is not list or len(w) != 3 or w[1] != "good"
                or w[0] is None):
            return None
        out[name] = w[0]
    return out


def _fold(a: Actual, e: Entry) -> None:
    try:
        body = decode_entry(e)
    except BodyError:
        a.unreadable += 1  # a malformed body is no fact about the device's run
        return
    if isinstance(body, (InputBody, KeyframeBody)):  # most entries: tested first
        for name, wire in body.values.items():
            if _good(wire, e.ts_ms):
                a.values[name] = wire[0]
        if isinstance(body, KeyframeBody):
            _fold_keyframe(a, body)
    elif isinstance(body, (StepBody, TripBody, EventBody)):
        _fold_occurrence(a, body, e.ts_ms)
    elif isinstance(body, OutputBody):
        a.outputs.update(body.writes)
    elif isinstance(body, AdapterFaultBody):
        a.faults.append({"ts_ms": e.ts_ms, "kind": e.kind.value, "reason": str(body.reason or None)})
    elif isinstance(body, RefusalBody):
        a.faults.append({"ts_ms": e.ts_ms, "kind": e.kind.value,
                         "reason": str(body.get("reason") or body.event)})


def _fold_occurrence(a: Actual, body: Occurrence, ts_ms: EpochMs) -> None:
    event = body.event
    if event == EventKind.STEP_ENTERED:
        a.step = str(body.get("step"))
        a.steps.append(StepMark(step=a.step, ts_ms=ts_ms))
    # offline.then: hold pauses the steps instead of going safe (the mode table says which)
    a.mode = mode_after(event, body.get("then")) or a.mode
    if isinstance(body, TripBody) and event in _TRIP_EVENTS:
        a.trip = str(body.get("reason") or _TRIP_EVENTS[EventKind(event)] or event)
        a.faults.append({"ts_ms": ts_ms, "kind": str(event), "reason": a.trip})


def _good(wire: WireReading, ts_ms: EpochMs) -> bool:
    """`reading_from_wire(wire, ts_ms).good`, without building a Reading for the common good
    triple: a day of journal at 1 Hz is 86,400 of them. Anything else takes the full decode
    (which raises for a malformed one)."""
    if type(wire) is list and len(wire) == 3 and wire[1] == "good":
        return wire[0] is not None
    return reading_from_wire(wire, ts_ms).good


def _fold_keyframe(a: Actual, body: KeyframeBody) -> None:
    # A keyframe (once a minute) names the step and mode even when no step was entered during
    # the outage; without it a device stuck in one step would look like the projection.
    a.outputs.update(body.outputs)
    if body.step is not None:
        a.step = body.step
    a.mode = body.mode

