"""Alarms: their kinds, and which device facts raise and clear them — pure.

Rules (fixed interface 3):
- An alarm is keyed by (device, kind) while active: raising it again updates its count, last time
  and detail (the store deduplicates); it stays until the condition clears, and an operator's
  acknowledgement (who, when) does not clear it — it says someone is on it.
- Kinds are strings (`AlarmKind` members equal their strings); other parts of the hub raise some
  of them (`chain_break`, `journal_gap`, `claim_mismatch`, `forged_batch`, `unknown_device`).
- What raises and what clears is data: `JOURNAL_RAISES` / `JOURNAL_CLEARS` by journal event name
  (interface 2), `telemetry_changes` for telemetry's `safe` / `trip` fields (interface 1). A
  detail quotes device input, so `detail_of` bounds what it quotes.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from contracts import modbus_exceptions
from contracts.engine_state import Mode
from contracts.inputs import CommandKind
from contracts.journal_events import AgentEvent, EventKind
from contracts.limits import quote
from contracts.rollout_health import ROLLOUT_FALLBACK


class AlarmKind(enum.StrEnum):
    GUARD_TRIP = "guard_trip"            # the device latched safe_state (any trip)
    SAFE_UNCONFIRMED = "safe_unconfirmed"  # safe_state written but not yet confirmed by read-back
    SECOND_WRITER = "second_writer"      # another Modbus master changed one of our points
    MODEL_DIVERGENCE = "model_divergence"  # the process does not follow the contract's `expect`
    RESUME_REFUSED = "resume_refused"    # the agent refused an operator's resume: cause persists
    ESCALATED = "escalated"              # the planner left a decision to an operator
    REPLAN_REFUSED = "replan_refused"    # the planner's re-issue was refused by the hub itself
    RECONCILE_EMPTY = "reconcile_empty"
    CHAIN_BREAK = "chain_break"          # the journal's hash chain broke: device in FAULT
    JOURNAL_GAP = "journal_gap"
    CLAIM_MISMATCH = "claim_mismatch"
    FORGED_BATCH = "forged_batch"
    UNKNOWN_DEVICE = "unknown_device"
    UNSIGNED_JOURNAL = "unsigned_journal"  # accepted: no key enrolled, signatures not required
    HUB_ERROR = "hub_error"
    DRIFT = "drift"                      # a device has not run its desired contract for too long
    ROLLOUT_FALLBACK = "rollout_fallback"  # the agent fell back to its known-good contract (held),
                                           # or journaled why it could not (rollout_fallback_failed)


_K = AlarmKind
_TRIP_CLEARED_BY = (_K.GUARD_TRIP, _K.RESUME_REFUSED, _K.ESCALATED)
_STARTED_CLEARS = (*_TRIP_CLEARED_BY, _K.MODEL_DIVERGENCE)

JOURNAL_RAISES: Mapping[str, AlarmKind] = MappingProxyType({
    EventKind.GUARD_TRIP: _K.GUARD_TRIP,
    EventKind.AUTONOMY_EXHAUSTED: _K.GUARD_TRIP,
    EventKind.ENGINE_ERROR: _K.GUARD_TRIP,
    AgentEvent.SAFE_UNCONFIRMED: _K.SAFE_UNCONFIRMED,
    AgentEvent.SECOND_WRITER: _K.SECOND_WRITER,
    EventKind.RESUME_REFUSED: _K.RESUME_REFUSED,
    AgentEvent.MODEL_DIVERGENCE: _K.MODEL_DIVERGENCE,
    ROLLOUT_FALLBACK: _K.ROLLOUT_FALLBACK,
    AgentEvent.ROLLOUT_FALLBACK_FAILED: _K.ROLLOUT_FALLBACK,  # could not: the trip holds instead
})
"""Journal events (body `event`) that raise an alarm. `command_refused` of a resume raises
RESUME_REFUSED too (see `journal_alarm`): the engine journals that until the agent's own
`resume_refused` event exists."""

JOURNAL_CLEARS: Mapping[str, tuple[AlarmKind, ...]] = MappingProxyType({
    AgentEvent.SAFE_CONFIRMED: (_K.SAFE_UNCONFIRMED,),
    AgentEvent.SECOND_WRITER_CLEARED: (_K.SECOND_WRITER,),
    AgentEvent.MODEL_DIVERGENCE_CLEARED: (_K.MODEL_DIVERGENCE,),  # the process follows it again
    # An accepted resume ends the latch; after a fallback it is the operator's answer as well.
    EventKind.RESUMED: (*_TRIP_CLEARED_BY, _K.SAFE_UNCONFIRMED, _K.ROLLOUT_FALLBACK),
    EventKind.STARTED: _STARTED_CLEARS,      # a new contract (operator or explicit policy) runs
    EventKind.ABORTED: (_K.RESUME_REFUSED,),  # still safe, but nobody waits for a resume any more
})

DEVICE_RESET_CLEARS = (_K.CHAIN_BREAK, _K.JOURNAL_GAP)
"""An admin's reset out of FAULT is the answer to these."""

def detail_of(event: str, body: Mapping[str, Any]) -> str:
    """A short, bounded description of a journal event for an alarm's detail; a device's
    exception answer in words (`detail=exception 2 (illegal data address)`, not `exception:2`)."""
    fields = ("reason", "cause", "point", "points", "value", "command", "attempts", "step",
              "expected", "actual", "tolerance", "commanded", "detail", "fallback", "cause_seq")
    parts = [f"{k}={quote(body[k], bare=True)}" for k in fields if body.get(k) is not None]
    return " ".join([quote(event, bare=True), *map(_worded, parts)])


def _worded(part: str) -> str:
    """`detail=exception:2` → `detail=exception 2 (illegal data address)`; other parts as they are."""
    key, _, value = part.partition("=")
    return f"{key}={modbus_exceptions.reason_in_words(value)}"


def _fault_of(trip: str, faults: Mapping[str, str]) -> str:
    """`: flow exception 2 (illegal data address) at input 70` for a trip cause `reason:flow`
    whose point's read is failing; else nothing."""
    point = trip.rpartition(":")[2]
    fault = faults.get(point) if point else None
    return f": {quote(point, bare=True)} {quote(fault, bare=True)}" if fault else ""


def journal_alarm(body: Mapping[str, Any]) -> tuple[AlarmKind | None, tuple[AlarmKind, ...]]:
    """(kind to raise or None, kinds to clear) for one journal entry body."""
    event = str(body.get("event"))
    if event == EventKind.COMMAND_REFUSED and body.get("kind") == CommandKind.RESUME:
        return _K.RESUME_REFUSED, ()
    return JOURNAL_RAISES.get(event), JOURNAL_CLEARS.get(event, ())


@dataclass(frozen=True, kw_only=True)
class TelemetryAlarms:
    raise_: tuple[tuple[AlarmKind, str], ...] = ()
    clear: tuple[AlarmKind, ...] = ()


def telemetry_changes(before: Mapping[str, Any] | None, safe: str | None, trip: str | None,
                      mode: str, faults: Mapping[str, str] | None = None) -> TelemetryAlarms:
    """Alarms to raise and clear when telemetry's `safe`/`trip` fields change (only on change:
    telemetry arrives every second, and an alarm's count should count occurrences). A trip on a
    point whose read is failing names the fault in words (`faults`, telemetry's)."""
    old_safe = before.get("safe") if before else None
    old_trip = before.get("trip") if before else None
    raise_: list[tuple[AlarmKind, str]] = []
    clear: list[AlarmKind] = []
    if trip is not None and trip != old_trip:
        raise_.append((_K.GUARD_TRIP, f"trip {quote(trip, bare=True)} (telemetry)"
                       + _fault_of(trip, faults or {})))
    if safe == "unconfirmed" and old_safe != "unconfirmed":
        raise_.append((_K.SAFE_UNCONFIRMED, "safe_state not yet confirmed by read-back"))
    if safe == "confirmed" and old_safe == "unconfirmed":
        clear.append(_K.SAFE_UNCONFIRMED)
    if trip is None and old_trip is not None and mode == Mode.RUNNING:
        clear.extend(_TRIP_CLEARED_BY)
    return TelemetryAlarms(raise_=tuple(raise_), clear=tuple(clear))
