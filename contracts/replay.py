"""Replay: feed journaled inputs back through the engine and prove what it wrote — pure.

Rules:
- The engine is pure (invariant 1): fed exactly what the agent fed it, it reproduces the agent's
  writes and events. `replay` is the engine over a sequence of cycles.
- The held view (`HeldView`): the agent journals a reading only when it changes beyond deadband
  and feeds its engine that journaled view. Between changes a GOOD reading keeps its value and
  is timed at the cycle; a BAD reading is held as recorded. Commands are fed in the cycle that
  consumed them, connectivity as last recorded.
- From a journal (`replay_entries`): a scan segment starts at a BOOT entry (engine state, t0,
  period). Cycles run at t0 + k*period, except where an OVERRUN entry (stamped at the first
  missed deadline) says the loop resumed later. Each cycle's replayed writes must equal its OUTPUT
  entries; every difference is a `Mismatch`. A segment whose contract the lookup cannot find, or
  whose BOOT does not decode, is skipped and named.
- Several contracts per agent: their segments interleave in one journal; contracts/journal_segments.py
  splits it (by BOOT and by each entry's contract tag), so each contract replays exactly on its
  own (`replay_by_contract`).
- From changes (`expand`): a change, command or connectivity change recorded at `ts` takes effect
  from the first cycle at or after `ts`.
- `first_divergence` names the index of the first write that differs (value, point or time), or
  the length of the shorter list when one is a prefix of the other.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from contracts.chain import Entry, EntryKind
from contracts.engine import Engine, EngineState, Event, Write
from contracts.inputs import Command, Inputs, Quality, Reading
from contracts.journal_events import (
    AgentEvent, Body, BodyError, BootBody, CommandBody, ConnectivityBody, ContractBody,
    ContractChange, EventBody, InputBody, KeyframeBody, OutputBody, OverrunBody, RefusalBody,
    decode_entry,
)
from contracts.journal_segments import Segment, boot_contract, segments
from contracts.schema import Contract
from contracts.signing import read_signed
from contracts.types import EpochMs, PointName, Value

Link = tuple[EpochMs, bool, EpochMs | None]
"""(ts, online, last_contact_ms): a connectivity change as the agent saw it."""

ContractLookup = Callable[[str], Contract | None]
"""Finds a contract by content hash (from the journal's CONTRACT entries or the contract store)."""


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


# -- from a journal ----------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Mismatch:
    ts_ms: EpochMs
    recorded: dict[str, Value]
    replayed: dict[str, Value]


@dataclass(frozen=True, kw_only=True)
class ReplayReport:
    segments: int
    cycles: int
    writes_checked: int
    mismatches: tuple[Mismatch, ...]
    skipped_segments: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches


_NOT_CYCLE = frozenset({EntryKind.CONTRACT, EntryKind.BOOT, EntryKind.GAP, EntryKind.CHECKPOINT})
_WALL_CLOCK_EVENTS = frozenset({AgentEvent.AGENT_STARTED, AgentEvent.STORED_CONTRACT_REFUSED,
                                AgentEvent.JOURNAL_RECOVERED, AgentEvent.OUTPUT_SYNC,
                                AgentEvent.UPLINK_FAILED, AgentEvent.JOURNAL_HOLE})
"""Written at wall-clock times outside any cycle: before the first cycle, or by the uplink."""


def _from_cycle(kind: EntryKind, body: Body) -> bool:
    """Whether a scan cycle wrote this entry (at a cycle time). Contract changes, boots, gaps and
    the agent's own start/restore entries carry wall-clock times outside any cycle."""
    if kind in _NOT_CYCLE:
        return False
    return not (isinstance(body, (EventBody, RefusalBody)) and body.event in _WALL_CLOCK_EVENTS)


class _Timeline:
    """A segment's bodies by time, and the last cycle it ran. Raises BodyError for an entry
    whose body does not decode."""

    def __init__(self, entries: Sequence[Entry], boot_ms: EpochMs) -> None:
        self.by_ts: dict[EpochMs, list[Body]] = {}
        end = boot_ms - 1  # a segment whose first cycle never committed replays nothing
        for e in entries:
            body = decode_entry(e)
            self.by_ts.setdefault(e.ts_ms, []).append(body)
            if _from_cycle(e.kind, body):
                # A CONTRACT "activated" entry is stamped with the NEW segment's first cycle
                # time, which this segment never ran: only what a scan cycle writes counts.
                end = max(end, e.ts_ms)
        self.end_ms = end


def _cycle_times(seg: _Timeline, start: BootBody) -> Iterator[EpochMs]:
    """Scheduled cycle times; at an OVERRUN entry, jump to where the loop resumed."""
    t, period = start.t0_ms, start.period_ms
    while t <= seg.end_ms:
        jump = next((b.resume_ms for b in seg.by_ts.get(t, ()) if isinstance(b, OverrunBody)), None)
        if jump is not None and jump > t:
            t = jump
            continue
        yield t
        t += period


def _segment_cycles(seg: _Timeline, start: BootBody, times: list[EpochMs]) -> Iterator[Cycle]:
    view = HeldView()
    for now in _cycle_times(seg, start):
        times.append(now)
        found = (view.apply(b, now) for b in seg.by_ts.get(now, ()))
        yield Cycle(now_ms=now, inputs=view.inputs(now, tuple(c for c in found if c is not None)))


def replay_segment(seg: Segment, contract: Contract) -> tuple[int, int, list[Mismatch]]:
    """(cycles, writes checked, mismatches) for one segment with a decoded BOOT. Raises
    BodyError for an entry of the segment whose body does not decode."""
    assert isinstance(seg.start, BootBody), "replay_entries skips a segment whose BOOT is bad"
    line = _Timeline(seg.entries, seg.boot.ts_ms)
    times: list[EpochMs] = []
    result = replay(contract, _segment_cycles(line, seg.start, times), seg.start.state)
    replayed: dict[EpochMs, dict[str, Value]] = {}
    for ts, w in result.writes:
        replayed.setdefault(ts, {})[w.point] = w.value
    checked, mismatches = 0, []
    for now in times:
        recorded = _recorded_writes(line.by_ts.get(now, ()))
        checked += len(recorded)
        if recorded != replayed.get(now, {}):
            mismatches.append(Mismatch(ts_ms=now, recorded=recorded, replayed=replayed.get(now, {})))
    return len(times), checked, mismatches


def _recorded_writes(bodies: Iterable[Body]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for b in bodies:
        if isinstance(b, OutputBody):
            out.update(b.writes)
    return out


def replay_entries(entries: Sequence[Entry], lookup: ContractLookup) -> ReplayReport:
    """Replay every segment whose contract `lookup` can find. Raises BodyError for an entry
    inside a segment whose body does not decode."""
    return _report(segments(entries), lookup)


def replay_by_contract(entries: Sequence[Entry], lookup: ContractLookup) -> dict[str, ReplayReport]:
    """`replay_entries` for each contract id apart: what each contract on the agent did."""
    by: dict[str, list[Segment]] = {}
    for seg in segments(entries):
        by.setdefault(boot_contract(seg.boot), []).append(seg)
    return {cid: _report(segs, lookup) for cid, segs in sorted(by.items())}


def _report(segs: Iterable[Segment], lookup: ContractLookup) -> ReplayReport:
    n_seg = n_cycles = n_checked = 0
    mismatches: list[Mismatch] = []
    skipped: list[str] = []
    for seg in segs:
        contract = lookup(seg.start.hash) if isinstance(seg.start, BootBody) else None
        if contract is None:
            why = seg.start if isinstance(seg.start, BodyError) else "no contract"
            skipped.append(f"seq {seg.boot.seq}: {why}")
            continue
        cycles, checked, bad = replay_segment(seg, contract)
        n_seg, n_cycles, n_checked = n_seg + 1, n_cycles + cycles, n_checked + checked
        mismatches.extend(bad)
    return ReplayReport(segments=n_seg, cycles=n_cycles, writes_checked=n_checked,
                        mismatches=tuple(mismatches), skipped_segments=tuple(skipped))


def contracts_in(entries: Iterable[Entry]) -> dict[str, Contract]:
    """Contracts carried by the journal's CONTRACT "accepted" entries, by content hash. The journal
    is hash-chained local evidence, so the signature is not re-checked here."""
    out: dict[str, Contract] = {}
    for e in entries:
        if e.kind is not EntryKind.CONTRACT:
            continue
        body = decode_entry(e)
        if isinstance(body, ContractBody) and body.event is ContractChange.ACCEPTED \
                and body.signed is not None and body.hash is not None:
            out[body.hash] = read_signed(body.signed)
    return out
