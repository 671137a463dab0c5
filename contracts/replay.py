"""Replay: feed recorded inputs back through the engine and prove what it wrote — pure.

Rules:
- The engine is pure (invariant 1): fed exactly what the agent fed it, it reproduces the agent's
  writes and events. `replay` is the engine over a sequence of cycles.
- The held view (`HeldView`): the agent journals a reading only when it changes beyond deadband
  and feeds its engine that journaled view. Between changes a GOOD reading keeps its value and
  is timed at the cycle; a BAD reading is held as recorded. Commands are fed in the cycle that
  consumed them, connectivity as last recorded.
- From changes (`expand`): a change, command or connectivity change recorded at `ts` takes effect
  from the first cycle at or after `ts`.
- From a journal: contracts/journal_replay.py cuts the entries into scan segments and checks each
  cycle's replayed writes against its recorded ones.
- `first_divergence` names the index of the first write that differs (value, point or time), or
  the length of the shorter list when one is a prefix of the other.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from contracts.engine import Engine, EngineState, Event, Write
from contracts.inputs import Command, Inputs, Quality, Reading
from contracts.journal_events import Body, CommandBody, ConnectivityBody, InputBody, KeyframeBody
from contracts.schema import Contract
from contracts.types import EpochMs, PointName

Link = tuple[EpochMs, bool, EpochMs | None]
"""(ts, online, last_contact_ms): a connectivity change as the agent saw it."""

@dataclass(frozen=True, kw_only=True, slots=True)
class Cycle:
    now_ms: EpochMs
    inputs: Inputs


@dataclass(frozen=True, kw_only=True)
class ReplayResult:
    writes: list[tuple[EpochMs, Write]]
    events: list[Event]
    final_state: EngineState


def replay(contract: Contract, cycles: Iterable[Cycle],
           from_state: EngineState | None = None) -> ReplayResult:
    """Run `contract`'s engine over `cycles` from `from_state` (default: the initial state).
    Raises ExprSyntaxError if an expression does not parse; the engine itself never raises."""
    engine = Engine(contract)
    state = from_state if from_state is not None else engine.initial_state()
    writes: list[tuple[EpochMs, Write]] = []
    events: list[Event] = []
    for cycle in cycles:
        result = engine.step(state, cycle.inputs, cycle.now_ms)
        state = result.state
        writes.extend((cycle.now_ms, w) for w in result.writes)
        events.extend(result.events)
    return ReplayResult(writes=writes, events=events, final_state=state)


def first_divergence(recorded: Sequence[tuple[EpochMs, Write]],
                     replayed: Sequence[tuple[EpochMs, Write]] | ReplayResult) -> int | None:
    """Index of the first mismatching (time, write), or None when both lists are equal."""
    other = replayed.writes if isinstance(replayed, ReplayResult) else replayed
    for i, (a, b) in enumerate(zip(recorded, other)):
        if a != b:
            return i
    return None if len(recorded) == len(other) else min(len(recorded), len(other))


class HeldView:
    """The engine's inputs as the agent built them: the journaled readings, held between changes."""

    def __init__(self) -> None:
        self.last: dict[PointName, Reading] = {}
        self.online = True
        self.last_contact_ms: EpochMs | None = None

    def inputs(self, now_ms: EpochMs, commands: tuple[Command, ...]) -> Inputs:
        view = {n: replace(r, ts_ms=now_ms) if r.quality is Quality.GOOD else r
                for n, r in self.last.items()}
        return Inputs(readings=view, online=self.online, last_contact_ms=self.last_contact_ms,
                      commands=commands)

    def apply(self, body: Body, ts_ms: EpochMs) -> Command | None:
        """Take in one journal body; the command it carries, if any."""
        if isinstance(body, (InputBody, KeyframeBody)):
            self.last.update(body.readings(ts_ms))
        elif isinstance(body, ConnectivityBody):
            self.online, self.last_contact_ms = body.online, body.last_contact_ms
        elif isinstance(body, CommandBody):
            return body.command
        return None


# -- from changes ------------------------------------------------------------------------------

def expand(changes: Sequence[tuple[EpochMs, Mapping[PointName, Reading]]], start_ms: EpochMs,
           end_ms: EpochMs, period_ms: int, *, commands: Sequence[tuple[EpochMs, Command]] = (),
           links: Sequence[Link] = ()) -> Iterator[Cycle]:
    """Cycles at `start_ms + k * period_ms` before `end_ms`, holding the last recorded readings.
    Each sequence must be in time order. Raises ValueError on a period <= 0 or unordered input."""
    if period_ms <= 0:
        raise ValueError(f"period_ms={period_ms!r} must be > 0")
    for what, seq in (("changes", changes), ("commands", commands), ("links", links)):
        _check_ordered(what, [item[0] for item in seq])
    return _cycles(changes, start_ms, end_ms, period_ms, commands, links)


def _check_ordered(what: str, times: list[EpochMs]) -> None:
    for i in range(1, len(times)):
        if times[i] < times[i - 1]:
            raise ValueError(f"{what}[{i}] ts={times[i]} is before {what}[{i - 1}] ts={times[i - 1]}")


def _cycles(changes: Sequence[tuple[EpochMs, Mapping[PointName, Reading]]], start: EpochMs,
            end: EpochMs, period: int, commands: Sequence[tuple[EpochMs, Command]],
            links: Sequence[Link]) -> Iterator[Cycle]:
    view = HeldView()
    ci = mi = li = 0
    for now in range(start, end, period):
        while ci < len(changes) and changes[ci][0] <= now:
            view.last.update(changes[ci][1])
            ci += 1
        while li < len(links) and links[li][0] <= now:
            _, view.online, view.last_contact_ms = links[li]
            li += 1
        due = []
        while mi < len(commands) and commands[mi][0] <= now:
            due.append(commands[mi][1])
            mi += 1
        yield Cycle(now_ms=now, inputs=view.inputs(now, tuple(due)))
