"""Projection of an offline device: the contract's engine run forward from what it last reported.

Rules:
- When a device goes `projected`, the hub runs the contract's engine forward from the last engine
  state the device reported (telemetry carries it) on the contract's `expect` model, at most
  HORIZON_MS ahead, sampled every SAMPLE_MS.
- The projection's inputs (`ProjectionInputs`) are stored with the device, so the same projection
  can be recomputed exactly (the engine is pure) after a hub restart or when the device comes
  back — we never trust a stale blob for a decision.
- A device's projection is remembered by its exact inputs: reconciling a day-long outage reuses it
  instead of running the engine over the day again; other inputs run it again.
- Per contract: an agent runs several contracts side by side, each from its own engine state, so
  each is projected on its own (keyed by device and contract name). The device's stored blob is
  the projection of the contract the device record names (what the device view and the
  reconciliation read, as before), and `contracts` maps each projected contract's name to its own
  blob of the same shape (that one included).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts.codec import canonical_dumps
from contracts.engine import EngineState
from contracts.projection import Projection, ProjectionPoint, confidence, project
from contracts.schema_parse import parse_contract
from contracts.types import EpochMs, Value
from hub.store import ContractRecord, HubStore

log = logging.getLogger("fieldpact.hub.offline")

HORIZON_MS = 24 * 3600 * 1000
"""Project at most a day ahead: past that the confidence is near zero and the contract will have
expired or been replanned anyway."""

SAMPLE_MS = 10_000
"""Projection samples every 10 s: fine enough for an operator's chart, ~8,640 points a day."""

MAX_TRANSITIONS = 200
"""Transitions kept in the stored blob: what an operator's timeline shows of an outage."""

Key = tuple[str, str]
"""(device id, contract name): one projection per contract a device runs."""


@dataclass(frozen=True, kw_only=True)
class ProjectionInputs:
    """Everything project() needs, stored so the projection can be recomputed exactly."""

    contract_id: str
    start_ms: EpochMs
    state: Mapping[str, Any] | None
    initial: Mapping[str, Value]
    from_seq: int

    def to_json(self) -> dict[str, Any]:
        return {"contract_id": self.contract_id, "start_ms": self.start_ms, "state": self.state,
                "initial": dict(self.initial), "from_seq": self.from_seq}


def point_json(p: ProjectionPoint) -> dict[str, Any]:
    return {"ts_ms": p.ts_ms, "step": p.step, "mode": p.mode, "outputs": dict(p.outputs),
            "modelled": dict(p.modelled)}


def current_point(points: list[dict[str, Any]], now_ms: EpochMs) -> dict[str, Any] | None:
    """The projected sample in force at `now_ms` (the last one at or before it)."""
    found = None
    for p in points:
        if p["ts_ms"] > now_ms:
            break
        found = p
    return found


def _event_json(e: Any) -> dict[str, Any]:
    return {"kind": e.kind.value, "ts_ms": e.ts_ms, **{k: v for k, v in e.fields}}


class Projector:
    """The projections of the projected devices: started, sampled, reused, forgotten."""

    def __init__(self, store: HubStore, clock: Callable[[], EpochMs]) -> None:
        self.store, self.clock = store, clock
        self.samples: dict[Key, list[dict[str, Any]]] = {}
        """Each projected (device, contract)'s samples (point_json), as the API shows them."""
        self.cache: dict[Key, tuple[bytes, Projection]] = {}
        """Each projected (device, contract)'s projection, keyed by its exact inputs (and the
        contract's hash)."""

    def start(self, device: str, record: ContractRecord, live: Mapping[str, Any] | None,
              from_seq: int) -> dict[str, Any]:
        """Project `device` running `record` from its last live values (None: from the start);
        the blob to store with the device."""
        now = self.clock()
        inputs = ProjectionInputs(
            contract_id=record.id, start_ms=int(live["ts_ms"]) if live else now,
            state=live.get("state") if live else None,
            initial=dict(live.get("values", {})) if live else {}, from_seq=from_seq)
        projection = self.project(record, inputs, device)
        self.samples[(device, record.contract)] = [point_json(p) for p in projection.points]
        log.info("projection_started device=%s contract=%s from_ms=%s confidence=%.2f",
                 device, record.id, inputs.start_ms, projection.confidence)
        return {"source": "projection", "inputs": inputs.to_json(), "computed_ms": now,
                "confidence": projection.confidence,
                "transitions": [_event_json(e) for e in projection.transitions][:MAX_TRANSITIONS]}

    def confidence_at(self, blob: Mapping[str, Any], now_ms: EpochMs) -> float:
        """How much to trust the projection `now_ms - start` into the outage (decays with age)."""
        record = self.store.contracts.get(blob["inputs"]["contract_id"])
        return confidence(parse_contract(record.document),
                          max(0, now_ms - blob["inputs"]["start_ms"]))

    def points(self, device: str, blob: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The projection samples for a projected device; recomputed from the stored inputs after
        a hub restart (the engine is pure, so the result is the same)."""
        inputs = ProjectionInputs(**blob["inputs"])
        key = (device, inputs.contract_id.rpartition("@")[0])  # contract_id is name@version
        if key not in self.samples:
            projection = self.project(self.store.contracts.get(inputs.contract_id), inputs, device)
            self.samples[key] = [point_json(p) for p in projection.points]
        return self.samples[key]

    def project(self, record: ContractRecord, inputs: ProjectionInputs,
                device: str | None = None) -> Projection:
        """The engine run forward on `inputs`; for a `device`, remembered by its exact inputs
        (one projection per contract of the device)."""
        key = record.content_hash.encode() + canonical_dumps(inputs.to_json())
        slot = (device, record.contract) if device is not None else None
        cached = self.cache.get(slot) if slot is not None else None
        if cached is not None and cached[0] == key:
            return cached[1]
        projection = self.run(record, inputs)
        if slot is not None:
            self.cache[slot] = (key, projection)
        return projection

    def run(self, record: ContractRecord, inputs: ProjectionInputs) -> Projection:
        """The engine run forward on `inputs`, never from the cache."""
        contract = parse_contract(record.document)
        state = EngineState.from_mapping(inputs.state) if inputs.state else None
        end = min(contract.valid_until, inputs.start_ms + HORIZON_MS)
        return project(contract, state, inputs.start_ms, max(end, inputs.start_ms + 1),
                       initial=inputs.initial, every_ms=SAMPLE_MS)

    def forget(self, device: str, contract: str | None = None) -> None:
        """The device is back: its outage's projection of `contract` (None: of every contract)
        is no longer shown or reused."""
        for table in (self.samples, self.cache):
            for key in [k for k in table if k[0] == device and contract in (None, k[1])]:
                del table[key]

    def current(self, device: str, blob: dict[str, Any], now_ms: EpochMs) -> dict[str, Any]:
        """`blob` (one contract's stored projection) with the sample in force at `now_ms`
        surfaced as ts_ms/values/step/mode, and its confidence then (in place)."""
        sample = current_point(self.points(device, blob), now_ms)
        blob["current"] = sample
        blob["ts_ms"] = blob.get("inputs", {}).get("start_ms", now_ms)
        if sample is not None:
            blob["values"] = {**sample["modelled"], **sample["outputs"]}
            blob["step"], blob["mode"] = sample["step"], sample["mode"]
        blob["confidence"] = self.confidence_at(blob, now_ms)
        return blob
