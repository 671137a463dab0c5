"""A segment: one contract running from one engine state, with the per-contract parts around its
engine (read plans, input filters, actuator, deadband view) and what the scan loop remembers
between cycles (last good values, the cause of a trip, failing points, forced safe state).

A segment opens with a BOOT entry in the journal and ends when another version of its contract
takes over, the journal comes back after an outage, or a contract that needs its write points
retires it after it ended (agent/scan.py). Several contracts run side by side, one segment each,
keyed by contract id (`key`): every entry a segment journals carries that id (`SegmentJournal`),
so each contract's segment replays on its own. Its engine state is checkpointed when it changes
(`encode_checkpoint`, under `checkpoint_name(key)`), so a restart resumes the step it was in
(agent/contract_store.py).
"""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.actuation import Actuator
from agent.journal_thread import AsyncJournal
from agent.input_filters import InputGuards, InputView
from agent.link import DeviceLink
from agent.cycle_items import Item, fault_item
from agent.faults import MAX_WORDS, FaultWords, in_words
from agent.registers import plan_reads
from agent.timing import Anchor
from contracts.codec import canonical_dumps, loads
from contracts.engine import Engine, EngineState, EventKind, StepResult
from contracts.chain import Entry, EntryKind
from contracts.inputs import Command, Reading
from contracts.journal_events import AgentEvent, agent_event_body, item, tag_items
from contracts.model_divergence import DEFAULT_AFTER_S, ModelWatch
from contracts.schema import Contract
from contracts.types import EpochMs, Value
from contracts.wire import MAX_TELEMETRY_FAULTS

log = logging.getLogger("fieldpact.agent.scan")

CHECKPOINT_NAME = "engine"
"""The journal checkpoint holding the running contract's hash and engine state, as an agent that
ran one contract at a time kept it (read at restore, never written)."""

RUNNING_NAME = "engine:running"
"""The journal checkpoint listing the contract ids with a segment (the ones a restart resumes)."""


def checkpoint_name(key: str) -> str:
    """The checkpoint holding contract `key`'s hash and engine state."""
    return f"{CHECKPOINT_NAME}:{key}"


class SegmentJournal:
    """The journal as one segment writes it: every item tagged with the segment's contract."""

    def __init__(self, journal: AsyncJournal, key: str) -> None:
        self._journal, self.key = journal, key

    async def append_many(self, items: Sequence[tuple[EntryKind, Mapping[str, Any], int]]
                          ) -> list[Entry]:
        return await self._journal.append_many(tag_items([(k, dict(b), ts) for k, b, ts in items],
                                                         self.key))


@dataclass(frozen=True, kw_only=True)
class ActiveContract:
    """A verified contract: the parsed contract, the signed bytes it came in, their hash."""

    contract: Contract
    signed: bytes
    hash: str


Resume = tuple[ActiveContract, EngineState]
"""A contract a restart continues, with the engine state it was checkpointed in."""


class Segment:
    """One contract's engine and the per-contract helpers around it."""

    def __init__(self, active: ActiveContract, state: EngineState | None, link: DeviceLink,
                 journal: AsyncJournal, anchor: Anchor, *,
                 model_after_s: float = DEFAULT_AFTER_S) -> None:
        self.active, self.anchor = active, anchor
        c = active.contract
        self.key = c.contract
        self.journal = SegmentJournal(journal, self.key)
        self.commands: deque[Command] = deque()  # routed to this contract (agent/scan.py)
        self.conn_seen = -1  # the Connectivity flip last journaled (-1: journal it at once)
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
        self.faults: dict[str, str] = {}  # failing point -> its fault in words, for telemetry
        self._points = {p.name: p for p in c.points}
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
                   or (r.reason or "").startswith("exception")}
        if failing or self.faults:
            self.faults = {n: in_words(raw[n].reason, self._points.get(n)).reason
                           for n in sorted(failing)}
        items = [fault_item(now_ms, "read", n, in_words(raw[n].reason, self._points.get(n)))
                 for n in sorted(failing - self.failing)]
        items += [fault_item(now_ms, "read_recovered", n, FaultWords(reason="ok"))
                  for n in sorted(self.failing - failing)]
        self.failing = failing
        return items

    def fault_words(self) -> dict[str, str]:
        """Each point failing now, in words, for telemetry: a failing read's fault, else the
        fault of its last write (`write: exception 3 (illegal data value) at holding 20`)."""
        writes = {n: f"write: {w}"[:MAX_WORDS] for n, w in self.actuator.write_faults.items()}
        return {**writes, **self.faults}

    def telemetry_faults(self) -> tuple[tuple[str, str], ...]:
        """`fault_words` as telemetry carries them: by point name, at most MAX_TELEMETRY_FAULTS."""
        return tuple(sorted(self.fault_words().items()))[:MAX_TELEMETRY_FAULTS]

    def model_check(self, state: EngineState, readings: dict[str, Reading],
                    now_ms: EpochMs) -> list[Item]:
        """Journal items for a process that stopped (or started again) following the contract's
        `expect` model (contracts/model_divergence.py). The engine never sees them."""
        items = []
        for f in self.model.observe(state, readings, now_ms):
            event = AgentEvent.MODEL_DIVERGENCE if f.diverged else AgentEvent.MODEL_DIVERGENCE_CLEARED
            log.warning("%s contract=%s point=%s expected=%s actual=%s tolerance=%s step=%s",
                        event.value, self.key, f.point, f.fields["expected"], f.fields["actual"],
                        f.fields["tolerance"], self.step_name(),
                        extra={"event": event.value, "point": f.point})
            items.append(item(agent_event_body(event, step=self.step_name(), **f.fields), now_ms))
        return items

    def note_trip(self, result: StepResult) -> None:
        """Track the cause of the latest guard trip ("stale:level") until the trip clears."""
        for e in result.events:
            if e.kind is EventKind.GUARD_TRIP:
                self.trip_cause = f"{e.get('reason')}:{e.get('point')}"
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
