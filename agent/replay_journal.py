"""Replay a journal through the engine and prove the recorded outputs — pure over a list of entries.

A scan segment starts at a BOOT entry (engine state, t0, period). Cycles run at t0 + k*period, except
where an OVERRUN entry says the loop skipped ahead. At each cycle the engine is fed exactly what the
agent fed it: the journaled view of the inputs (agent/input_filters.py), the commands consumed that cycle,
and the connectivity last journaled. The writes the replay produces must equal the OUTPUT entries.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from contracts.inputs import reading_from_wire
from contracts.chain import Entry, EntryKind
from contracts.engine import Engine, EngineState
from contracts.inputs import Command, CommandKind, Inputs, Quality, Reading
from contracts.schema import Contract
from contracts.types import EpochMs, PointName

ContractLookup = Callable[[str], Contract | None]
"""Finds a contract by content hash (from the journal's CONTRACT entries or the contract store)."""


@dataclass(frozen=True, kw_only=True)
class Mismatch:
    ts_ms: EpochMs
    recorded: dict[str, Any]
    replayed: dict[str, Any]


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
_WALL_CLOCK_EVENTS = frozenset({"agent_started", "stored_contract_refused", "journal_recovered",
                                "output_sync"})  # output_sync is written before the first cycle


def _from_cycle(e: Entry) -> bool:
    """Whether a scan cycle wrote `e` (at a cycle time). Contract changes, boots, gaps and the
    agent's own start/restore entries carry wall-clock times outside any cycle."""
    return e.kind not in _NOT_CYCLE and e.body.get("event") not in _WALL_CLOCK_EVENTS


class _Segment:
    def __init__(self, boot: Entry, entries: Sequence[Entry]) -> None:
        self.boot = boot
        self.by_ts: dict[EpochMs, list[Entry]] = {}
        for e in entries:
            self.by_ts.setdefault(e.ts_ms, []).append(e)
        # The last cycle the segment ran: only entries a scan cycle writes count. A CONTRACT
        # "activated" entry is stamped with the NEW segment's first cycle time, which the old
        # segment never ran.
        # A segment whose first cycle never committed (the journal failed at once) replays nothing.
        self.end_ms = max((e.ts_ms for e in entries if _from_cycle(e)), default=boot.ts_ms - 1)


def segments(entries: Iterable[Entry]) -> Iterator[_Segment]:
    """Split entries at BOOT entries; entries before the first BOOT are not replayable."""
    boot: Entry | None = None
    body: list[Entry] = []
    for e in entries:
        if e.kind is EntryKind.BOOT:
            if boot is not None:
                yield _Segment(boot, body)
            boot, body = e, []
        elif boot is not None:
            body.append(e)
    if boot is not None:
        yield _Segment(boot, body)


class _Feed:
    """The engine's inputs as the agent built them, rebuilt from entries."""

    def __init__(self) -> None:
        self.last: dict[PointName, Reading] = {}
        self.online = True
        self.last_contact_ms: EpochMs | None = None

    def apply(self, e: Entry) -> Command | None:
        if e.kind in (EntryKind.INPUT, EntryKind.KEYFRAME):
            for name, wire in e.body["values"].items():
                self.last[name] = reading_from_wire(wire, e.ts_ms)
        elif e.kind is EntryKind.CONNECTIVITY:
            self.online, self.last_contact_ms = e.body["online"], e.body["last_contact_ms"]
        elif e.kind is EntryKind.COMMAND:
            return Command(kind=CommandKind(e.body["kind"]), id=e.body["id"],
                           point=e.body.get("point"), value=e.body.get("value"))
        return None

    def inputs(self, now_ms: EpochMs, commands: tuple[Command, ...]) -> Inputs:
        view = {n: replace(r, ts_ms=now_ms) if r.quality is Quality.GOOD else r
                for n, r in self.last.items()}
        return Inputs(readings=view, online=self.online, last_contact_ms=self.last_contact_ms,
                      commands=commands)


def _cycle_times(seg: _Segment) -> Iterator[EpochMs]:
    """Scheduled cycle times. An OVERRUN entry is stamped with the first missed deadline and names
    the deadline the loop resumed at, so replay jumps exactly where the agent did."""
    t, period = seg.boot.body["t0_ms"], seg.boot.body["period_ms"]
    while t <= seg.end_ms:
        jump = next((e.body["resume_ms"] for e in seg.by_ts.get(t, ())
                     if e.kind is EntryKind.OVERRUN), None)
        if jump is not None and jump > t:
            t = jump
            continue
        yield t
        t += period


def replay_segment(seg: _Segment, contract: Contract) -> tuple[int, int, list[Mismatch]]:
    """(cycles, writes checked, mismatches) for one segment."""
    engine = Engine(contract)
    state = EngineState.from_mapping(seg.boot.body["state"])
    feed, cycles, checked, mismatches = _Feed(), 0, 0, []
    for now in _cycle_times(seg):
        entries = seg.by_ts.get(now, [])
        commands = tuple(c for c in (feed.apply(e) for e in entries) if c is not None)
        result = engine.step(state, feed.inputs(now, commands), now)
        state, cycles = result.state, cycles + 1
        recorded = _recorded_writes(entries)
        replayed = {w.point: w.value for w in result.writes}
        checked += len(recorded)
        if recorded != replayed:
            mismatches.append(Mismatch(ts_ms=now, recorded=recorded, replayed=replayed))
    return cycles, checked, mismatches


def _recorded_writes(entries: Sequence[Entry]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for e in entries:
        if e.kind is EntryKind.OUTPUT:
            out.update(e.body["writes"])
    return out


def replay_entries(entries: Sequence[Entry], lookup: ContractLookup) -> ReplayReport:
    """Replay every segment whose contract `lookup` can find."""
    n_seg = n_cycles = n_checked = 0
    mismatches: list[Mismatch] = []
    skipped: list[str] = []
    for seg in segments(entries):
        contract = lookup(seg.boot.body["hash"]) if seg.boot.body.get("hash") else None
        if contract is None:
            skipped.append(f"seq {seg.boot.seq}: no contract")
            continue
        cycles, checked, bad = replay_segment(seg, contract)
        n_seg, n_cycles, n_checked = n_seg + 1, n_cycles + cycles, n_checked + checked
        mismatches.extend(bad)
    return ReplayReport(segments=n_seg, cycles=n_cycles, writes_checked=n_checked,
                        mismatches=tuple(mismatches), skipped_segments=tuple(skipped))


def contracts_in(entries: Iterable[Entry]) -> dict[str, Contract]:
    """Contracts carried by the journal's CONTRACT "accepted" entries, by content hash. The journal
    is hash-chained local evidence, so the signature is not re-checked here."""
    from contracts.signing import read_signed
    out: dict[str, Contract] = {}
    for e in entries:
        if e.kind is EntryKind.CONTRACT and e.body.get("event") == "accepted" and "signed" in e.body:
            out[e.body["hash"]] = read_signed(e.body["signed"])
    return out
