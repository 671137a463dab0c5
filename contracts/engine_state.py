"""The engine's values: its state between cycles (with a versioned plain-data form), and what a
cycle returns (writes and events). `contracts.engine` re-exports all of them.

Everything the engine needs to continue is here, so an agent that restarts from a persisted state
resumes at the same step with the same step clock, and the hub can project or replay from it.
`to_mapping` returns only CBOR-able plain types (str, int, float, bool, None, lists) and carries
`"v": STATE_VERSION`; `from_mapping` rejects any other version, and any malformed field, with
EncodingError naming the field. The round trip is exact (ints stay ints, floats stay floats).
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from contracts.errors import EncodingError
from contracts.guards import TripReason
from contracts.types import EpochMs, PointName, Value

STATE_VERSION = 1
"""Version of the persisted engine state; bump on any change of meaning, and refuse the rest."""


class Mode(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    HELD = "held"
    SAFE = "safe"
    OFFLINE_HOLD = "offline_hold"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    ABORTED = "aborted"


LIVE = frozenset({Mode.RUNNING, Mode.HELD, Mode.OFFLINE_HOLD})
"""Modes whose outputs follow the step targets (everything else holds the safe state)."""
TERMINAL = frozenset({Mode.COMPLETED, Mode.FAILED, Mode.EXPIRED, Mode.ABORTED})
"""Modes the contract never leaves."""

Pairs = tuple[tuple[PointName, Value], ...]


class EventKind(enum.StrEnum):
    STARTED = "started"
    STEP_ENTERED = "step_entered"
    STEP_DONE = "step_done"
    STEP_TIMEOUT = "step_timeout"
    COMPLETED = "completed"
    FAILED = "failed"
    GUARD_TRIP = "guard_trip"
    SAFE_STATE = "safe_state"
    EXPIRED = "expired"
    AUTONOMY_EXHAUSTED = "autonomy_exhausted"
    HELD = "held"
    RESUMED = "resumed"
    ABORTED = "aborted"
    WRITE_RATE_LIMITED = "write_rate_limited"
    WRITE_CLAMPED = "write_clamped"
    WRITE_REFUSED = "write_refused"
    COMMAND_REFUSED = "command_refused"
    ENGINE_ERROR = "engine_error"
    RESUME_REFUSED = "resume_refused"


FieldValue: TypeAlias = "bool | int | float | str | None"


@dataclass(frozen=True, kw_only=True, slots=True)
class Write:
    point: PointName
    value: Value


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """A transition, with its fields in a fixed order (step, point, value, reason, limit...)."""

    kind: EventKind
    ts_ms: EpochMs
    fields: tuple[tuple[str, FieldValue], ...] = ()

    def get(self, name: str) -> FieldValue:
        """The field called `name`, or None."""
        return next((v for k, v in self.fields if k == name), None)


@dataclass(frozen=True, kw_only=True, slots=True)
class StepResult:
    state: EngineState
    writes: tuple[Write, ...]
    events: tuple[Event, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineState:
    """`outputs`/`targets` list the owned write points in contract order. `step_started_ms` is when
    the current step (re)started; `paused_ms` when HELD/OFFLINE_HOLD began (the step clock is
    shifted by the pause on resume); `last_ms` the previous cycle (rate limits measure from it)."""

    mode: Mode
    step_index: int = 0
    step_started_ms: EpochMs | None = None
    outputs: Pairs = ()
    targets: Pairs = ()
    trip: TripReason | None = None
    last_ms: EpochMs | None = None
    paused_ms: EpochMs | None = None

    def to_mapping(self) -> dict[str, Any]:
        """Plain, CBOR-able form (see the module docstring)."""
        return {
            "v": STATE_VERSION, "mode": self.mode.value, "step_index": self.step_index,
            "step_started_ms": self.step_started_ms,
            "outputs": [[n, v] for n, v in self.outputs],
            "targets": [[n, v] for n, v in self.targets],
            "trip": None if self.trip is None else self.trip.value,
            "last_ms": self.last_ms, "paused_ms": self.paused_ms,
        }

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> EngineState:
        """Inverse of `to_mapping`. Raises EncodingError naming the bad field and value."""
        if not isinstance(m, Mapping):
            raise EncodingError(f"engine state must be a mapping, got {type(m).__name__}")
        if m.get("v") != STATE_VERSION:
            raise EncodingError(f"engine state v={m.get('v')!r} is not supported "
                                f"(this build reads {STATE_VERSION})")
        return cls(
            mode=_enum(Mode, m, "mode"), step_index=_int(m, "step_index"),
            step_started_ms=_opt_int(m, "step_started_ms"),
            outputs=_pairs(m, "outputs"), targets=_pairs(m, "targets"),
            trip=None if m.get("trip") is None else _enum(TripReason, m, "trip"),
            last_ms=_opt_int(m, "last_ms"), paused_ms=_opt_int(m, "paused_ms"),
        )


E = Any


def _enum(cls: type[enum.StrEnum], m: Mapping[str, Any], key: str) -> E:
    try:
        return cls(str(m.get(key)))
    except ValueError:
        raise EncodingError(f"engine state {key}={m.get(key)!r} is not a {cls.__name__}") from None


def _int(m: Mapping[str, Any], key: str) -> int:
    v = m.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise EncodingError(f"engine state {key}={v!r} must be an integer")
    return v


def _opt_int(m: Mapping[str, Any], key: str) -> int | None:
    return None if m.get(key) is None else _int(m, key)


def _pairs(m: Mapping[str, Any], key: str) -> Pairs:
    raw = m.get(key)
    if not isinstance(raw, (list, tuple)):
        raise EncodingError(f"engine state {key}={raw!r} must be a list of [point, value]")
    out = []
    for i, item in enumerate(raw):
        ok = isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
        if not ok or not isinstance(item[1], (bool, int, float)):
            raise EncodingError(f"engine state {key}[{i}]={item!r} must be [point, value]")
        out.append((item[0], item[1]))
    return tuple(out)
