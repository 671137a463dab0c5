"""The scan loop: read → guards → engine → journal → write, on fixed deadlines.

Theory of operation. A *segment* (agent/segment.py) is one contract running from one engine state:
it opens with a BOOT entry (engine state, t0, period); its cycles run at t0 + k*period (timing.py):
  1. reads every planned request (a failure marks exactly that request's points BAD); the
     endpoints are read at once, and the cycle's I/O is bounded by IO_SHARE of its period
     (`DeviceLink.pace`): an endpoint that has not answered by then is BAD for this cycle;
  2. applies the input guards (frozen, spike) and the deadband view (agent/input_filters.py);
  3. steps the pure engine with the view, the hub connectivity and the commands received;
  4. journals the cycle's items in one transaction — BEFORE touching the device (journal first);
  5. writes the engine's writes (never retried blindly: a failed write is journaled and the next
     read-back shows what happened) and what agent/actuation.py adds: safe state re-asserted until
     the read-back confirms it, every output re-asserted after a link loss (journaled as events in
     step 4, with the second-writer judgement of this cycle's read-backs);
  6. checkpoints the engine state when it changed, so a restart resumes at the right step.
Steps 4-6, and the sync of the outputs when a segment starts, are in agent/cycle_outputs.py; a
journal that cannot commit (outputs forced to safe state until it recovers) and an overrun are in
agent/scan_faults.py; the report and stats records in agent/scan_report.py.
The engine is fed the read-back of its own write points (journaled like every input), so a ramp
starts from what the device shows. A new contract (uplink or CLI) waits in `pending` until its
valid_from, then a new segment starts. Safety never waits for the network: nothing awaits the uplink.

Several contracts per agent (agent/roster.py holds the rules): one segment per contract id, each
with its own task, anchor, engine, safe state and journal tag; their cycles take turns on the
device link (`_io`, one cycle at a time: an endpoint serves one request at a time). Contracts whose
periods divide one another tick on the same instants and share one read per instant, coalesced per
(endpoint, unit, table) across them (agent/cycle_reads.py). A contract whose
write points overlap a running one's is refused, naming both. A trip of a contract trips the ones
its `interlock:` names, as an INTERLOCK command journaled in their own segment (replay stays exact).
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence

from agent import cycle_outputs, scan_faults
from agent.errors import JournalError
from agent.journal_thread import AsyncJournal
from agent.link import DeviceLink
from agent.cycle_items import cycle_items, keyframe_item
from agent.cycle_reads import CycleReads, shared_phase
from agent.health_proof import HealthWindows
from agent import pauses, roster
from agent.scan_report import Connectivity, CycleReport, ScanStats
from agent.segment import ActiveContract, Resume, Segment
from agent.shared_link import HurryVotes, SharedLink
from agent.timing import Anchor, free_phase, make_anchor, plan_next, sleep_until
from contracts.engine import EngineState
from contracts.model_divergence import DEFAULT_AFTER_S
from contracts.engine_state import Mode
from contracts.inputs import Command, Inputs, Reading
from contracts.journal_events import BootBody, ContractBody, ContractChange, item
from contracts.types import EpochMs
from transport.cancel import raise_if_cancelled

__all__ = ["IO_SHARE", "KEYFRAME_MS", "Connectivity", "CycleReport", "ScanLoop", "ScanStats"]

log = logging.getLogger("fieldpact.agent.scan")

KEYFRAME_MS = 60_000
"""A full snapshot of inputs and outputs once a minute bounds how far back a reader (or the hub)
must look to know every value, at ~1 entry/min of journal cost."""

IO_SHARE = 0.7
"""A cycle's device I/O must end within this share of its period (agent/endpoints.py), so a dead
endpoint never makes a cycle late: the rest is for the engine, the journal commit and the writes
(a few ms at most). Generous on purpose: an endpoint that answers, however slowly, within the
period must not be cut (its points would go BAD for nothing)."""


class ScanLoop:
    def __init__(self, journal: AsyncJournal, link: DeviceLink, conn: Connectivity, *,
                 on_cycle: Callable[[CycleReport], None] | None = None,
                 keyframe_ms: int = KEYFRAME_MS,
                 model_after_s: float = DEFAULT_AFTER_S) -> None:
        self.journal, self.link, self.conn = journal, link, conn
        self.model_after_s = model_after_s  # contracts/model_divergence.py
        self.commands: deque[Command] = deque()  # not routed yet (agent/roster.py: route)
        self.pending: dict[str, ActiveContract] = {}  # by contract id
        self.segments: dict[str, Segment] = {}  # by contract id
        self.stats = ScanStats()
        self._io = asyncio.Lock()  # one cycle at a time on the device link
        self._tg: asyncio.TaskGroup | None = None
        self._running: set[str] = set()  # contract ids whose task runs
        self._hurry = HurryVotes(link)  # each contract's actuator votes (agent/shared_link.py)
        self.reads = CycleReads(link)  # contracts due together share their reads
        self.proof = HealthWindows(journal)  # rollout contracts: a keyframe at the window's end
        self._on_cycle = on_cycle
        self._keyframe_ms = keyframe_ms
        self._wake = asyncio.Event()
        self.on_offer: Callable[[ActiveContract], None] | None = None

    @property
    def segment(self) -> Segment | None:
        """The first running segment by contract id (the only one on a one-contract agent)."""
        return self.segments[min(self.segments)] if self.segments else None

    def offer(self, active: ActiveContract) -> None:
        """Queue a verified contract. A new contract id starts at once (its engine waits for its
        valid_from); a new version of a running one takes over at its valid_from."""
        self.pending[active.contract.contract] = active
        self._wake.set()
        if self.on_offer is not None:
            self.on_offer(active)

    async def replace(self, active: ActiveContract, state: EngineState) -> bool:
        """Start `active` now from `state`, in place of its contract id's running segment (the
        agent's rollout fallback, agent/fallback.py). Between two cycles, never inside one: it
        waits for the device link. Returns whether it started (see `_start_segment`)."""
        async with self._io:
            return await self._start_segment(active, state, resumed=False)

    def command(self, cmd: Command, contract: str | None = None) -> None:
        """Hand a hub command to the contract it names (see agent/roster.py: route)."""
        for seg in roster.route(self.segments, cmd, contract):
            seg.commands.append(cmd)

    async def run(self, resume: Resume | Sequence[Resume] | None = None) -> None:
        """Run forever (until cancelled): one task per contract, started as contracts arrive."""
        resumes = [resume] if isinstance(resume, tuple) else list(resume or ())
        pauses.settle()  # before the first deadline: GC and GIL pauses bounded (agent/pauses.py)
        await self.proof.load()
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            for active, state in resumes:
                await self._start_segment(active, state, resumed=True)
            while True:
                raise_if_cancelled()
                self._wake.clear()
                await self._start_new()
                await self._wake.wait()

    async def _start_new(self) -> None:
        """Start each pending contract whose id runs no segment (a new version of a running
        contract waits in that segment's loop for its valid_from: `_maybe_switch`)."""
        for key in sorted(self.pending):
            if key not in self.segments:
                await self._start_segment(self.pending.pop(key), None, resumed=False)

    async def _start_segment(self, active: ActiveContract, state: EngineState | None,
                             *, resumed: bool) -> bool:
        """Start `active`'s segment (refused, journaled, if its write points overlap a running
        contract's; an ended contract holding them is retired). Returns whether it started."""
        key = active.contract.contract
        others = {k: s for k, s in self.segments.items() if k != key}
        refusal = roster.conflict(active, others, int(time.time() * 1000))
        if refusal is not None:
            await self.journal.append_many([refusal])
            return False
        for old in roster.retired_by(active, others):
            log.info("segment_retired contract=%s by=%s", old, key)
            del self.segments[old]
            self._hurry.withdraw(old)
        period = active.contract.scan_period_ms
        running = [s.anchor for k, s in self.segments.items() if k != key]
        phase = shared_phase(period, [(a.period_ms, a.wall_ms) for a in running])
        anchor = make_anchor(period, phase_ms=free_phase(period, [a.wall_ms for a in running])
                             if phase is None else phase)
        seg = Segment(active, state, SharedLink(self._hurry, key), self.journal, anchor,
                      model_after_s=self.model_after_s)
        boot = BootBody(boot_id=uuid.uuid4().hex, t0_ms=anchor.wall_ms,
                        period_ms=anchor.period_ms, contract=key,
                        version=active.contract.version, hash=active.hash, state=seg.state,
                        resumed=resumed)
        await self.journal.append_many([item(boot, anchor.wall_ms)])
        await self.proof.booted(active.contract, active.hash, anchor.wall_ms)
        self.segments[key], self._anchor = seg, anchor
        await roster.save_running(self.journal, self.segments, anchor.wall_ms)
        if key not in self._running and self._tg is not None:
            self._running.add(key)
            self._tg.create_task(self._contract_task(key), name=f"scan:{key}")
        log.info("segment_started contract=%s version=%s resumed=%s t0_ms=%s",
                 key, active.contract.version, resumed, anchor.wall_ms)
        return True

    async def _restart(self, seg: Segment) -> bool:
        """A new segment of `seg`'s contract from its engine state (after a journal outage)."""
        return await self._start_segment(seg.active, seg.state, resumed=True)

    async def _contract_task(self, key: str) -> None:
        """Run contract `key`'s segments, one after the other, until none is left for it."""
        try:
            while (seg := self.segments.get(key)) is not None:
                await self._run_segment(seg)
        finally:
            self._running.discard(key)

    async def _run_segment(self, seg: Segment) -> None:
        anchor: Anchor = seg.anchor
        k, next_keyframe = 0, anchor.wall_ms
        async with self._io:
            self.link.pace(None)  # not a cycle: the outputs' sync is bounded by the links' timeouts
            self.reads.wrote(seg)
            await cycle_outputs.sync_outputs(seg, self.link, anchor.wall_ms)
        while self.segments.get(seg.key) is seg:
            raise_if_cancelled()
            await sleep_until(anchor.deadline(k))
            started = time.monotonic()
            run_k, skipped = plan_next(anchor, k, started)
            now_ms = anchor.wall(run_k)
            due_k, k = k, run_k + 1
            async with self._io:  # the other contracts' cycles wait for this one's I/O
                if self.segments.get(seg.key) is not seg:
                    # Retired (or replaced) while this cycle waited for the link: a retired
                    # contract must not re-assert its safe state over the points' new owner.
                    return
                self.link.pace(anchor.deadline(run_k) + anchor.period_ms / 1000 * IO_SHARE)
                if skipped:
                    try:
                        await scan_faults.journal_overrun(seg, anchor, due_k, run_k, started,
                                                          self.stats)
                    except JournalError as exc:  # a full disk must not stop the loop keeping safe
                        await scan_faults.journal_down(seg, exc, now_ms)
                if seg.forced_safe is not None:
                    self.reads.wrote(seg)
                    await scan_faults.hold_forced_safe(seg, now_ms)
                    if await scan_faults.try_recover(seg, now_ms, self._restart):
                        return  # a new segment took over; the contract's task continues with it
                    continue
                proof = self.proof.due(seg.active.hash, now_ms)  # agent/health_proof.py
                keyframe = proof or now_ms >= next_keyframe
                if keyframe:
                    next_keyframe = now_ms + self._keyframe_ms
                try:
                    report = await self.cycle(seg, now_ms, keyframe=keyframe)
                    if proof:
                        await self.proof.proven(seg.active.hash, now_ms)
                except JournalError as exc:
                    await scan_faults.journal_down(seg, exc, now_ms)
                    continue
            report.late_ms = (started - anchor.deadline(run_k)) * 1000.0
            report.duration_ms = (time.monotonic() - started) * 1000.0
            self._account(report, anchor.period_ms)
            await self._maybe_switch(seg, now_ms + anchor.period_ms)

    async def cycle(self, seg: Segment, now_ms: EpochMs, *, keyframe: bool = False) -> CycleReport:
        """One scan cycle at engine time `now_ms`. Public so tests can drive cycles directly."""
        raw = await self.reads.read(seg, now_ms, self.segments.values())
        items = seg.read_faults(raw, now_ms)
        guarded = seg.guards.apply(raw)
        seg.remember_good(guarded, now_ms)
        view, changes = seg.view.update(guarded, now_ms, keyframe=keyframe)
        inputs = self._inputs(seg, view)
        result = seg.engine.step(seg.state, inputs, now_ms)
        seg.note_trip(result)
        items += seg.model_check(result.state, guarded, now_ms)
        if result.state.mode is Mode.SAFE and seg.state.mode is not Mode.SAFE:
            self._trip_interlocked(seg, now_ms)
        items += cycle_items(now_ms, changes, inputs, result,
                             connectivity_changed=self._take_conn_change(seg))
        if keyframe:
            items.append(keyframe_item(now_ms, view, result, seg.step_name()))
        extra_items, extra = seg.actuator.plan(result, raw, now_ms)
        acked = await cycle_outputs.commit_and_write(seg, items + extra_items, result, extra, now_ms)
        await cycle_outputs.verify_safe(seg, self.link, acked, dict(result.state.outputs), now_ms)
        await cycle_outputs.checkpoint(seg, self.journal, result.state, now_ms)
        # "Healthy" is about the loop keeping its deadlines (ScanStats.account), not about the
        # device: a device fault is handled by safe_state, and restarting the agent cannot fix it.
        return CycleReport(now_ms=now_ms, late_ms=0.0, duration_ms=0.0, result=result,
                           view=view, healthy=True, contract=seg.key)

    def _inputs(self, seg: Segment, view: dict[str, Reading]) -> Inputs:
        online, contact = self.conn.inputs_view()
        while self.commands:
            self.command(self.commands.popleft())
        commands = tuple(seg.commands)
        seg.commands.clear()
        return Inputs(readings=view, online=online, last_contact_ms=contact, commands=commands)

    def _take_conn_change(self, seg: Segment) -> bool:
        changed, seg.conn_seen = seg.conn_seen != self.conn.flips, self.conn.flips
        return changed

    def _trip_interlocked(self, seg: Segment, now_ms: EpochMs) -> None:
        """`seg` tripped: the live contracts its `interlock:` names trip at their next cycle."""
        for other in roster.interlocked(seg, self.segments):
            other.commands.append(roster.interlock_command(seg.key, now_ms))
            log.warning("interlock_trip contract=%s by=%s", other.key, seg.key)

    def _account(self, report: CycleReport, period_ms: int) -> None:
        self.stats.account(report, period_ms)
        if self._on_cycle is not None:
            self._on_cycle(report)

    async def _maybe_switch(self, seg: Segment, next_ms: EpochMs) -> None:
        """A new version of `seg`'s contract takes over at its valid_from."""
        p = self.pending.get(seg.key)
        if p is not None and next_ms >= p.contract.valid_from:
            del self.pending[seg.key]
            await self.journal.append_many([item(ContractBody(
                event=ContractChange.ACTIVATED, contract=p.contract.contract,
                version=p.contract.version, hash=p.hash), next_ms)])
            await self._start_segment(p, None, resumed=False)
