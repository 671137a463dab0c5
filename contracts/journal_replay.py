"""Replay from a journal: cut it into scan segments and prove each cycle's writes — pure.

Rules:
- A scan segment starts at a BOOT entry (engine state, t0, period); entries before the first BOOT
  are not replayable. Cycles run at t0 + k*period, except where an OVERRUN entry (stamped at the
  first missed deadline) says the loop resumed later. Inputs are the journaled view held between
  changes (contracts/replay.py's HeldView).
- Each cycle's replayed writes must equal its OUTPUT entries; every difference is a `Mismatch`.
- A segment whose contract the lookup cannot find, or whose BOOT does not decode, is skipped and
  named. The journal carries its own contracts (`contracts_in`).
- Several contracts per agent: their segments interleave in one journal; contracts/journal_segments.py
  splits it (by BOOT and by each entry's contract tag), so each contract replays exactly on its
  own (`replay_by_contract`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from contracts.chain import Entry, EntryKind
from contracts.journal_events import (
    AgentEvent, Body, BodyError, BootBody, ContractBody, ContractChange, EventBody, OutputBody,
    OverrunBody, RefusalBody, decode_entry,
)
from contracts.journal_segments import Segment, boot_contract, segments
from contracts.replay import Cycle, HeldView, replay
from contracts.schema import Contract
from contracts.signing import read_signed
from contracts.types import EpochMs, Value

ContractLookup = Callable[[str], Contract | None]
"""Finds a contract by content hash (from the journal's CONTRACT entries or the contract store)."""


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
