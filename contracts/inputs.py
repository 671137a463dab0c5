"""What the engine is given each cycle: readings with quality, connectivity, and commands.

These are values, produced by the agent's adapters (or by the hub's projection model) and journaled
so that a replay feeds the engine exactly what it saw (invariant 1).
"""
from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from contracts.limits import quote
from contracts.types import EpochMs, PointName, Value


class Quality(enum.StrEnum):
    GOOD = "good"
    BAD = "bad"


@dataclass(frozen=True, kw_only=True, slots=True)
class Reading:
    """One point's value as last read. `ts_ms` is when it was read (the scan cycle's time);
    `reason` says why quality is BAD (e.g. "timeout", "exception:4", "frozen", "spike")."""

    value: Value | None
    quality: Quality
    ts_ms: EpochMs
    reason: str | None = None

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD and self.value is not None


class CommandKind(enum.StrEnum):
    """Hub or operator commands the engine obeys (they arrive over MQTT `…/cmd`)."""

    HOLD = "hold"      # pause step progression, keep outputs
    RESUME = "resume"  # leave HELD, or clear a latched guard trip if inputs are healthy
    ABORT = "abort"    # outputs to safe_state, contract ends as aborted
    WRITE = "write"    # manual write of one point; refused unless owned, writable and in limits
    INTERLOCK = "interlock"  # the agent's own: contract `point` (its id) tripped; trip this one too


@dataclass(frozen=True, kw_only=True, slots=True)
class Command:
    kind: CommandKind
    id: str
    point: PointName | None = None
    value: Value | None = None


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """Everything the engine sees in one cycle besides its own state and the time.

    `online` is whether the hub is reachable; `last_contact_ms` is the last moment it was (the
    offline autonomy budget counts from there). `online=True` with no broker configured means the
    agent runs standalone, without an autonomy budget."""

    readings: Mapping[PointName, Reading] = field(default_factory=dict)
    online: bool = True
    last_contact_ms: EpochMs | None = None
    commands: tuple[Command, ...] = ()


def reading_to_wire(r: Reading) -> list[object]:
    """Compact journal/wire form of a reading: [value, quality, reason]; the time is the entry's."""
    return [r.value, r.quality.value, r.reason]


def reading_from_wire(v: Sequence[object], ts_ms: EpochMs) -> Reading:
    """Inverse of `reading_to_wire`. Raises ValueError for a malformed triple."""
    if len(v) != 3:
        raise ValueError(f"reading: expected [value, quality, reason], got {quote(v)}")
    value, quality, reason = v
    return Reading(value=value, quality=Quality(quality), ts_ms=ts_ms,  # type: ignore[arg-type]
                   reason=reason)  # type: ignore[arg-type]
