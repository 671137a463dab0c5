"""The live-values cache: what the hub keeps of each device's latest telemetry — pure.

Rules:
- One `LiveValues` per device, replaced whole by each telemetry message (frozen: the API's thread
  reads the cache while the MQTT side replaces entries, never a half-written one).
- Interface 1's optional telemetry fields (`commanded`, `read_ms`, `safe`, `trip`, `faults`) are read with
  defaults, so an older agent's telemetry still works.
- The cache holds live values only. What the store keeps per device (`DeviceRecord.projection`)
  is either the last flushed live values or an outage's projection; its `"source"` key says
  which, and only this module and the projection's writer (hub/offline.py) read or write it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.types import EpochMs
from contracts.wire import Telemetry

LIVE = "live"
PROJECTION = "projection"
"""The stored blob's `source`: flushed live values, or an outage's projection (hub/offline.py)."""

SHOWN_FIELDS = ("ts_ms", "received_ms", "values", "commanded", "read_ms", "mode", "step", "safe",
                "trip", "faults")
"""What the API shows of a live device: the device's truth (read-back), the engine's commands
beside it, when each value was read, the engine's mode and trip, and the points whose reads are
failing, in words."""


@dataclass(frozen=True, kw_only=True)
class LiveValues:
    """One telemetry message as the hub keeps it. `received_ms` is the hub's clock at arrival;
    `seq` the journal head the device reported; `state` the engine state (projection seed)."""

    ts_ms: EpochMs
    received_ms: EpochMs
    values: Mapping[str, Any] = field(default_factory=dict)
    commanded: Mapping[str, Any] = field(default_factory=dict)
    read_ms: Mapping[str, EpochMs] = field(default_factory=dict)
    safe: str | None = None
    trip: str | None = None
    faults: Mapping[str, str] = field(default_factory=dict)
    mode: str
    step: str | None = None
    state: Any = None
    seq: int = 0
    version: int | None = None  # of the contract this telemetry is for (an agent runs several)

    @classmethod
    def of(cls, t: Telemetry, received_ms: EpochMs) -> LiveValues:
        """The cache's record of one telemetry message."""
        return cls(ts_ms=t.ts_ms, received_ms=received_ms, values=dict(t.values),
                   commanded=dict(getattr(t, "commanded", ())),
                   read_ms=dict(getattr(t, "read_ms", ())), safe=getattr(t, "safe", None),
                   trip=getattr(t, "trip", None), faults=dict(getattr(t, "faults", ())),
                   mode=t.mode, step=t.step, state=t.state,
                   seq=t.seq, version=t.version)

    def shown(self) -> dict[str, Any]:
        """The stored/shown form: `source` live and SHOWN_FIELDS (what the API and a flush use)."""
        return {"source": LIVE, **{k: getattr(self, k) for k in SHOWN_FIELDS}}

    def seed(self) -> dict[str, Any]:
        """What a projection starts from when the device goes offline (hub/offline.py)."""
        return {"ts_ms": self.ts_ms, "state": self.state, "values": dict(self.values),
                "version": self.version}


LiveCache = dict[str, LiveValues]
"""device id → its latest LiveValues (the MQTT side writes, the API reads)."""


def is_projection(blob: object) -> bool:
    """Whether a device's stored blob is an outage's projection (evidence until reconciled)."""
    return isinstance(blob, Mapping) and blob.get("source") == PROJECTION


def seen_ms(live: LiveValues | None, last_seen_ms: EpochMs | None) -> EpochMs:
    """When the device was last heard: its newest telemetry or the store's last_seen_ms."""
    return max(live.ts_ms if live else 0, last_seen_ms or 0)
