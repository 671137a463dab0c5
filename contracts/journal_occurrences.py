"""Journal event names and the occurrence bodies (STEP, TRIP, REFUSAL, EVENT entries) — pure.

An occurrence body is `{event, ...fields}`: the engine's `Event` (its kind and fields) or one of
the agent's own events. contracts/journal_events.py is the one way in (encode/decode, the version
rule); this module holds the names every reader compares against instead of bare strings.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Self, TypeAlias

from contracts.chain import EntryKind
from contracts.engine_state import Event, EventKind
from contracts.journal_fields import (CONTRACT_TAG, VERSION_KEY, BodyError, FieldReader,
                                     versioned)

__all__ = ["ENGINE_EVENT_KIND", "AgentEvent", "ContractChange", "EventBody", "EventName",
           "Occurrence", "RefusalBody", "StepBody", "TripBody", "agent_event_body",
           "engine_event_body", "freeze", "frozen_map"]


class AgentEvent(enum.StrEnum):
    """Events the agent itself journals (the engine's are `EventKind`). Never rename one."""

    AGENT_STARTED = "agent_started"
    STORED_CONTRACT_REFUSED = "stored_contract_refused"  # a REFUSAL entry
    JOURNAL_RECOVERED = "journal_recovered"
    JOURNAL_HOLE = "journal_hole"
    OUTPUT_SYNC = "output_sync"  # a segment's first assertion of the engine's outputs
    OUTPUT_REASSERT = "output_reassert"
    SAFE_UNCONFIRMED = "safe_unconfirmed"
    SAFE_CONFIRMED = "safe_confirmed"
    SECOND_WRITER = "second_writer"
    SECOND_WRITER_CLEARED = "second_writer_cleared"
    UPLINK_FAILED = "uplink_failed"
    MODEL_DIVERGENCE = "model_divergence"  # the process does not follow `expect` (contracts/model_divergence.py)
    MODEL_DIVERGENCE_CLEARED = "model_divergence_cleared"
    ROLLOUT_FALLBACK = "rollout_fallback"  # I2: fell back to the known-good contract (agent/fallback_rules.py)
    ROLLOUT_FALLBACK_FAILED = "rollout_fallback_failed"  # the known-good could not be installed


class ContractChange(enum.StrEnum):
    """The `event` of a CONTRACT entry. Never rename one."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    ACTIVATED = "activated"
    ACTIVATION_DUE = "activation_due"
    EXPIRY_DUE = "expiry_due"


EventName: TypeAlias = "EventKind | AgentEvent | str"
"""An occurrence's name: the engine's or the agent's member when known, else the string read."""

_NAMES: Mapping[str, EventKind | AgentEvent] = MappingProxyType(
    {**{k.value: k for k in EventKind}, **{k.value: k for k in AgentEvent}})

ENGINE_EVENT_KIND: Mapping[EventKind, EntryKind] = MappingProxyType({
    **{k: EntryKind.STEP for k in (EventKind.STARTED, EventKind.STEP_ENTERED, EventKind.STEP_DONE,
                                   EventKind.STEP_TIMEOUT, EventKind.COMPLETED, EventKind.FAILED)},
    **{k: EntryKind.TRIP for k in (EventKind.GUARD_TRIP, EventKind.SAFE_STATE,
                                   EventKind.AUTONOMY_EXHAUSTED, EventKind.EXPIRED,
                                   EventKind.ENGINE_ERROR)},
    **{k: EntryKind.REFUSAL for k in (EventKind.WRITE_REFUSED, EventKind.COMMAND_REFUSED)},
})
"""The entry kind of an engine event; every other engine event is an EVENT entry."""


def frozen_map(m: Mapping[str, Any]) -> Mapping[str, Any]:
    return m if isinstance(m, MappingProxyType) else MappingProxyType(dict(m))


def freeze(obj: object, *names: str) -> None:
    for name in names:
        object.__setattr__(obj, name, frozen_map(getattr(obj, name)))


@dataclass(frozen=True, kw_only=True, slots=True)
class _Occurrence:
    """An event and its fields (an engine `Event`'s, or the agent's own)."""

    KIND: ClassVar[EntryKind]
    event: EventName
    fields: Mapping[str, Any] = field(default_factory=dict)
    contract: str | None = None  # the tag (CONTRACT_TAG): whose segment wrote it

    def __post_init__(self) -> None:
        freeze(self, "fields")
        if "event" in self.fields:
            raise ValueError(f"{self.KIND} body: 'event' is the name, not one of the fields")
        if CONTRACT_TAG in self.fields or VERSION_KEY in self.fields:
            raise ValueError(f"{self.KIND} body: {CONTRACT_TAG!r} is the contract tag and "
                             f"{VERSION_KEY!r} the body version, not fields")

    def get(self, name: str) -> Any:
        """The field called `name`, or None."""
        return self.fields.get(name)

    def to_body(self) -> dict[str, Any]:
        return versioned({"event": str(self.event), **self.fields}, self.contract)

    @classmethod
    def from_body(cls, r: FieldReader) -> Self:
        name, tag = r.text("event"), r.tag()
        return cls(event=_NAMES.get(name, name), fields=r.rest(), contract=tag)


@dataclass(frozen=True, kw_only=True, slots=True)
class StepBody(_Occurrence):
    """Step progress and the contract's end: started, step_*, completed, failed."""

    KIND: ClassVar[EntryKind] = EntryKind.STEP


@dataclass(frozen=True, kw_only=True, slots=True)
class TripBody(_Occurrence):
    """Safety: guard_trip, safe_state, autonomy_exhausted, expired, engine_error."""

    KIND: ClassVar[EntryKind] = EntryKind.TRIP


@dataclass(frozen=True, kw_only=True, slots=True)
class RefusalBody(_Occurrence):
    """A refused write or command, or a stored contract that failed its checks."""

    KIND: ClassVar[EntryKind] = EntryKind.REFUSAL


@dataclass(frozen=True, kw_only=True, slots=True)
class EventBody(_Occurrence):
    """Every other engine event, and the agent's own (AgentEvent)."""

    KIND: ClassVar[EntryKind] = EntryKind.EVENT


Occurrence: TypeAlias = "StepBody | TripBody | RefusalBody | EventBody"


OCCURRENCE: Mapping[EntryKind, type[StepBody | TripBody | RefusalBody | EventBody]] = \
    MappingProxyType({EntryKind.STEP: StepBody, EntryKind.TRIP: TripBody,
                      EntryKind.REFUSAL: RefusalBody, EntryKind.EVENT: EventBody})


def engine_event_body(event: Event) -> Occurrence:
    """The body of an engine event, of the kind `ENGINE_EVENT_KIND` gives it."""
    cls = OCCURRENCE[ENGINE_EVENT_KIND.get(event.kind, EntryKind.EVENT)]
    return cls(event=event.kind, fields=dict(event.fields))


def agent_event_body(event: AgentEvent, /, **fields: Any) -> RefusalBody | EventBody:
    """The body of one of the agent's own events (a stored contract refused is a REFUSAL)."""
    cls = RefusalBody if event is AgentEvent.STORED_CONTRACT_REFUSED else EventBody
    return cls(event=event, fields=fields)
