"""The engine's mode machine as a table — pure; the engine moves by it and the hub reads it.

Each rule says which modes a trigger leaves, the mode it enters, and the event the engine emits
when it fires (so a journal reader can replay the modes from the events alone: `mode_after`).

    trigger        from                              to            event
    START          PENDING                           RUNNING       started       now >= valid_from
    HOLD           RUNNING                           HELD          held          HOLD command
    RESUME         HELD, SAFE                        RUNNING       resumed       RESUME (SAFE: guards pass, autonomy left)
    ONLINE         OFFLINE_HOLD                      RUNNING       resumed       the hub is reachable again
    TRIP           RUNNING, HELD, OFFLINE_HOLD       SAFE          guard_trip
    AUTONOMY_SAFE  RUNNING, HELD                     SAFE          autonomy_exhausted {then: safe_state}
    AUTONOMY_HOLD  RUNNING                           OFFLINE_HOLD  autonomy_exhausted {then: hold}
    COMPLETE       RUNNING                           COMPLETED     completed     the last step is done
    FAIL           RUNNING                           FAILED        failed        a step timed out with on_timeout fail|safe_state
    EXPIRE         every mode but the terminal ones  EXPIRED       expired       now >= valid_until
    ABORT          every mode but the terminal ones  ABORTED       aborted       ABORT command
    FAULT          every mode                        SAFE          engine_error  a fault inside the engine

A move the table does not hold raises EngineError, which the engine turns into FAULT (SAFE):
after a failure the machine is in an explicit fault state (STYLE rule 2).
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from contracts.engine_state import LIVE, TERMINAL, EventKind, Mode
from contracts.errors import EngineError
from contracts.schema import OfflineAction


class Trigger(enum.StrEnum):
    START = "start"
    HOLD = "hold"
    RESUME = "resume"
    ONLINE = "online"
    TRIP = "trip"
    AUTONOMY_SAFE = "autonomy_safe"
    AUTONOMY_HOLD = "autonomy_hold"
    COMPLETE = "complete"
    FAIL = "fail"
    EXPIRE = "expire"
    ABORT = "abort"
    FAULT = "fault"


@dataclass(frozen=True, kw_only=True, slots=True)
class ModeRule:
    trigger: Trigger
    sources: frozenset[Mode]
    target: Mode
    event: EventKind


_ACTIVE = frozenset(Mode) - TERMINAL

MODE_RULES: tuple[ModeRule, ...] = tuple(
    ModeRule(trigger=t, sources=frozenset(s), target=to, event=ev) for t, s, to, ev in (
        (Trigger.START, {Mode.PENDING}, Mode.RUNNING, EventKind.STARTED),
        (Trigger.HOLD, {Mode.RUNNING}, Mode.HELD, EventKind.HELD),
        (Trigger.RESUME, {Mode.HELD, Mode.SAFE}, Mode.RUNNING, EventKind.RESUMED),
        (Trigger.ONLINE, {Mode.OFFLINE_HOLD}, Mode.RUNNING, EventKind.RESUMED),
        (Trigger.TRIP, LIVE, Mode.SAFE, EventKind.GUARD_TRIP),
        (Trigger.AUTONOMY_SAFE, {Mode.RUNNING, Mode.HELD}, Mode.SAFE, EventKind.AUTONOMY_EXHAUSTED),
        (Trigger.AUTONOMY_HOLD, {Mode.RUNNING}, Mode.OFFLINE_HOLD, EventKind.AUTONOMY_EXHAUSTED),
        (Trigger.COMPLETE, {Mode.RUNNING}, Mode.COMPLETED, EventKind.COMPLETED),
        (Trigger.FAIL, {Mode.RUNNING}, Mode.FAILED, EventKind.FAILED),
        (Trigger.EXPIRE, _ACTIVE, Mode.EXPIRED, EventKind.EXPIRED),
        (Trigger.ABORT, _ACTIVE, Mode.ABORTED, EventKind.ABORTED),
        (Trigger.FAULT, frozenset(Mode), Mode.SAFE, EventKind.ENGINE_ERROR),
    ))
"""The rows of the table above, in its order."""

TRANSITIONS: Mapping[tuple[Mode, Trigger], Mode] = MappingProxyType(
    {(m, r.trigger): r.target for r in MODE_RULES for m in r.sources})
"""(mode, trigger) -> the mode entered; a pair not here is an illegal move."""

_RULE = MappingProxyType({r.trigger: r for r in MODE_RULES})


def next_mode(mode: Mode, trigger: Trigger) -> Mode:
    """The mode `trigger` moves `mode` to. Raises EngineError for a move the table does not hold."""
    to = TRANSITIONS.get((mode, trigger))
    if to is None:
        raise EngineError(f"mode {mode.value}: {trigger.value} is not a move of the mode table")
    return to


def event_of(trigger: Trigger) -> EventKind:
    """The event the engine emits when `trigger` fires."""
    return _RULE[trigger].event


def target_of(trigger: Trigger) -> Mode:
    """The mode `trigger` enters (from every mode it leaves)."""
    return _RULE[trigger].target


def trigger_of(event: EventKind | str, then: object = None) -> Trigger | None:
    """The trigger a journaled event records (`then` is an autonomy_exhausted event's field), or
    None for an event that moves no mode. RESUMED records RESUME or ONLINE: both enter RUNNING."""
    if event == EventKind.AUTONOMY_EXHAUSTED:
        return Trigger.AUTONOMY_HOLD if then == OfflineAction.HOLD else Trigger.AUTONOMY_SAFE
    return next((r.trigger for r in MODE_RULES if r.event == event), None)


def mode_after(event: EventKind | str, then: object = None) -> Mode | None:
    """The mode the engine is in after it emitted `event`, or None if the event moves no mode."""
    trigger = trigger_of(event, then)
    return None if trigger is None else target_of(trigger)
