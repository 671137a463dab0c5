"""Telemetry, agent to hub on `…/telemetry` (the rules are contracts/wire.py's)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from contracts.limits import MAX_EPOCH_MS, MAX_VERSION
from contracts.types import EpochMs, Value
from contracts.wire_fields import (Message, as_pairs, bad, check_int, check_pairs, check_str,
                                   is_value)


SAFE_STATES = ("unconfirmed", "confirmed")
"""Telemetry `safe`: whether the device's read-back shows the safe state yet (agent/safe_state.py)."""


MAX_FAULT_WORDS = 200
"""A point's fault in words is bounded (agent/faults.py writes at most this many characters)."""

MAX_TELEMETRY_FAULTS = 256
"""Failing points one telemetry message names (the first by name; the journal has every one):
256 x (name + words) stays well inside MAX_BYTES beside 2,048 values and the engine state."""


@dataclass(frozen=True, kw_only=True)
class Telemetry(Message):
    """Agent to hub on `…/telemetry`: the device's truth, the engine's mode and step, the journal
    seq, and the running contract with its engine state (the hub projects an offline device from it).

    `values` is what the device shows: good read inputs and the read-back of write points, never
    the engine's belief; `commanded` is the engine's outputs; `read_ms` the epoch ms each value was
    last read good (its age). `safe` is None unless the engine holds its safe state, then whether
    the device confirms it; `trip` is the latched trip cause (e.g. "stale:level"); `faults` names
    each point whose read is failing now, in words (`exception 2 (illegal data address) at holding
    63`, "timeout"). The fields after `state` were added with defaults, so older payloads still
    decode."""

    KIND: ClassVar[str] = "telemetry"
    MAX_BYTES: ClassVar[int] = 512 * 1024
    """MAX_POINTS values plus the engine state (outputs, timers): ~100 kB at 2,048 points."""
    ts_ms: EpochMs
    values: tuple[tuple[str, Value], ...]
    mode: str
    step: str | None
    seq: int
    contract: str | None = None
    version: int | None = None
    state: Mapping[str, Any] | None = None
    commanded: tuple[tuple[str, Value], ...] = ()
    read_ms: tuple[tuple[str, int], ...] = ()
    safe: str | None = None
    trip: str | None = None
    faults: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        k = self.KIND
        check_int(k, "ts_ms", self.ts_ms, maximum=MAX_EPOCH_MS)
        check_pairs(k, "values", self.values, is_value)
        check_str(k, "mode", self.mode)
        check_str(k, "step", self.step, optional=True)
        check_int(k, "seq", self.seq)
        check_str(k, "contract", self.contract, optional=True)
        check_int(k, "version", self.version, minimum=1, optional=True, maximum=MAX_VERSION)
        if self.state is not None and not isinstance(self.state, Mapping):
            raise bad(k, "state", "must be an engine state mapping", self.state)
        check_pairs(k, "commanded", self.commanded, is_value)
        check_pairs(k, "read_ms", self.read_ms, lambda v: isinstance(v, int) and not isinstance(v, bool)
               and v >= 0)
        if self.safe is not None and self.safe not in SAFE_STATES:
            raise bad(k, "safe", f"must be one of {', '.join(SAFE_STATES)} or null", self.safe)
        check_str(k, "trip", self.trip, optional=True)
        check_pairs(k, "faults", self.faults,
               lambda v: isinstance(v, str) and 0 < len(v) <= MAX_FAULT_WORDS)
        if len(self.faults) > MAX_TELEMETRY_FAULTS:
            raise bad(k, "faults", f"must name at most {MAX_TELEMETRY_FAULTS} points",
                       len(self.faults))

    @classmethod
    def _from_body(cls, body: dict[str, Any]) -> dict[str, Any]:
        out = {**body, "values": as_pairs(body.get("values"))}
        for name in ("commanded", "read_ms", "faults"):
            if name in body:
                out[name] = as_pairs(body[name])
        return out
