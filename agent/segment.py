"""A segment: one contract running from one engine state, with the per-contract parts around its
engine (read plans, input filters, actuator, deadband view) and what the scan loop remembers
between cycles (last good values, the cause of a trip, failing points, forced safe state).

A segment opens with a BOOT entry in the journal and ends when another contract takes over or the
journal comes back after an outage (agent/scan.py). Its engine state is checkpointed when it changes
(`encode_checkpoint`), so a restart resumes the step it was in (agent/contract_store.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from agent.actuation import Actuator
from agent.input_filters import InputGuards, InputView
from agent.link import DeviceLink, is_exception
from agent.cycle_items import Item, fault_item
from agent.registers import plan_reads
from contracts.codec import canonical_dumps, loads
from contracts.engine import Engine, EngineState, EventKind, StepResult
from contracts.inputs import Reading
from contracts.journal_events import AgentEvent, agent_event_body, item
from contracts.model_divergence import DEFAULT_AFTER_S, ModelWatch
from contracts.schema import Contract
from contracts.types import EpochMs, Value

log = logging.getLogger("fieldpact.agent.scan")

MAX_TRIP_DETAIL = 120
"""The reading's reason quoted in telemetry's trip text: a worded exception with its address fits."""

CHECKPOINT_NAME = "engine"
"""The journal checkpoint holding the running contract's hash and engine state."""


@dataclass(frozen=True, kw_only=True)
class ActiveContract:
    """A verified contract: the parsed contract, the signed bytes it came in, their hash."""

    contract: Contract
    signed: bytes
    hash: str


class Segment:
    """One contract's engine and the per-contract helpers around it."""

    def __init__(self, active: ActiveContract, state: EngineState | None, link: DeviceLink, *,
                 model_after_s: float = DEFAULT_AFTER_S) -> None:
        self.active = active
        c = active.contract
        self.engine = Engine(c)
        self.state = state if state is not None else self.engine.initial_state()
        self.plan = plan_reads(c.points)
        self.guards = InputGuards(c.points)
        self.actuator = Actuator(c, link)
        self.write_plan = plan_reads(self.actuator.points.values())
        # The engine is fed its owned write points' read-back too (ramps start from the device).
        self.view = InputView([*c.read_points, *self.actuator.points.values()])
        self.last_good: dict[str, tuple[Value, EpochMs]] = {}  # device truth, for telemetry
        self.trip_cause: str | None = None  # "stale:level", from the latest guard trip
        self.failing: set[str] = set()
        self.forced_safe: dict[str, Any] | None = None  # set while the journal cannot commit
        self.checkpointed: EngineState | None = None  # the state last saved as a checkpoint
        self.model = ModelWatch(c, model_after_s)  # is the process following `expect`?

    def step_name(self) -> str | None:
        steps, i = self.active.contract.steps, self.state.step_index
        return steps[i].name if 0 <= i < len(steps) else None

    def remember_good(self, readings: dict[str, Reading], now_ms: EpochMs) -> None:
        """Keep the last GOOD value of each point (what telemetry reports as the device's truth)."""
        for name, r in readings.items():
            if r.good:
                self.last_good[name] = (r.value, now_ms)  # type: ignore[assignment]

    def read_faults(self, raw: dict[str, Reading], now_ms: EpochMs) -> list[Item]:
        """Journal items for the points whose reads started failing this cycle, and for those
        that recovered (a fault is journaled on its edges, not every cycle)."""
        failing = {n for n, r in raw.items() if r.reason in ("timeout", "disconnected")
                   or is_exception(r.reason)}
        items = [fault_item(now_ms, "read", raw[n].reason or "bad", n)
                 for n in sorted(failing - self.failing)]
        items += [fault_item(now_ms, "read_recovered", "ok", n) for n in sorted(self.failing - failing)]
        self.failing = failing
        return items

    def model_check(self, state: EngineState, readings: dict[str, Reading],
                    now_ms: EpochMs) -> list[Item]:
        """Journal items for a process that stopped (or started again) following the contract's
        `expect` model (contracts/model_divergence.py). The engine never sees them."""
        items = []
        for f in self.model.observe(state, readings, now_ms):
            event = AgentEvent.MODEL_DIVERGENCE if f.diverged else AgentEvent.MODEL_DIVERGENCE_CLEARED
            log.warning("%s point=%s expected=%s actual=%s tolerance=%s step=%s", event.value,
                        f.point, f.fields["expected"], f.fields["actual"], f.fields["tolerance"],
                        self.step_name(), extra={"event": event.value, "point": f.point})
            items.append(item(agent_event_body(event, step=self.step_name(), **f.fields), now_ms))
        return items

    def note_trip(self, result: StepResult) -> None:
        """Track the cause of the latest guard trip ("stale:level"; a bad reading's own reason in
        words beside it: "bad_quality:level (exception 2 (illegal data address) at input 0..1)")
        until the trip clears."""
        for e in result.events:
            if e.kind is EventKind.GUARD_TRIP:
                detail = e.get("detail")
                words = f" ({str(detail)[:MAX_TRIP_DETAIL]})" if detail else ""
                self.trip_cause = f"{e.get('reason')}:{e.get('point')}{words}"
            elif e.kind is EventKind.RESUME_REFUSED:
                log.warning("resume_refused command=%s cause=%s", e.get("command"), e.get("cause"))
        if result.state.trip is None:
            self.trip_cause = None


def encode_checkpoint(contract_hash: str, state: EngineState) -> bytes:
    """The checkpoint blob for `state` of the contract with `contract_hash`."""
    return canonical_dumps({"hash": contract_hash, "state": state.to_mapping()})


def decode_checkpoint(data: bytes) -> tuple[str, EngineState]:
    """(contract hash, engine state) from a checkpoint blob."""
    m = loads(data)
    return m["hash"], EngineState.from_mapping(m["state"])
