"""The scan loop: read → guards → engine → journal → write, on fixed deadlines.

Theory of operation. A *segment* (agent/segment.py) is one contract running from one engine state:
it opens with a BOOT entry (engine state, t0, period); its cycles run at t0 + k*period (timing.py):
  1. reads every planned request (a failure marks exactly that request's points BAD);
  2. applies the input guards (frozen, spike) and the deadband view (agent/input_filters.py);
  3. steps the pure engine with the view, the hub connectivity and the commands received;
  4. journals the cycle's items in one transaction — BEFORE touching the device (journal first);
  5. writes the engine's writes (never retried blindly: a failed write is journaled and the next
     read-back shows what happened) and what agent/actuation.py adds: safe state re-asserted until
     the read-back confirms it, every output re-asserted after a link loss (journaled as events in
     step 4, with the second-writer judgement of this cycle's read-backs);
  6. checkpoints the engine state when it changed, so a restart resumes at the right step.
The engine is fed the read-back of its own write points (journaled like every input), so a ramp
starts from what the device shows. A new contract (uplink or CLI) waits in `pending` until its
valid_from, then a new segment starts. Safety never waits for the network: nothing awaits the uplink.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from agent.errors import JournalError
from agent.journal_thread import AsyncJournal
from agent.link import DeviceLink
from agent.cycle_items import cycle_items, keyframe_item, overrun_item
from agent.segment import CHECKPOINT_NAME, ActiveContract, Segment, encode_checkpoint
from agent.timing import Anchor, make_anchor, plan_next, sleep_until
from contracts.engine import EngineState, StepResult
from contracts.model_divergence import DEFAULT_AFTER_S
from contracts.inputs import Command, Inputs, Reading
from contracts.journal_events import (
    AgentEvent, BootBody, ContractBody, ContractChange, agent_event_body, item,
)
from contracts.types import EpochMs
from transport.cancel import raise_if_cancelled

log = logging.getLogger("fieldpact.agent.scan")

KEYFRAME_MS = 60_000
"""A full snapshot of inputs and outputs once a minute bounds how far back a reader (or the hub)
must look to know every value, at ~1 entry/min of journal cost."""

@dataclass
class Connectivity:
    """Hub reachability as the engine sees it. Changed only on flips, so it journals rarely."""

    standalone: bool
    online: bool = False
    last_contact_ms: EpochMs | None = None
    changed: bool = True

    def set_online(self, online: bool, contact_ms: EpochMs) -> None:
        if online != self.online:
            self.online, self.last_contact_ms, self.changed = online, contact_ms, True

    def inputs_view(self) -> tuple[bool, EpochMs | None]:
        if self.standalone:
            return True, None
        return self.online, (None if self.online else self.last_contact_ms)


@dataclass
class CycleReport:
    now_ms: EpochMs
    late_ms: float
    duration_ms: float
    result: StepResult
    view: dict[str, Reading]
    healthy: bool


@dataclass
class ScanStats:
    cycles: int = 0
    overruns: int = 0
    skipped: int = 0
    lateness_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


class ScanLoop:
    def __init__(self, journal: AsyncJournal, link: DeviceLink, conn: Connectivity, *,
                 on_cycle: Callable[[CycleReport], None] | None = None,
                 keyframe_ms: int = KEYFRAME_MS,
                 model_after_s: float = DEFAULT_AFTER_S) -> None:
        self.journal, self.link, self.conn = journal, link, conn
        self.model_after_s = model_after_s  # contracts/model_divergence.py
        self.commands: deque[Command] = deque()
        self.pending: ActiveContract | None = None
        self.segment: Segment | None = None
        self.stats = ScanStats()
        self._on_cycle = on_cycle
        self._keyframe_ms = keyframe_ms
        self._wake = asyncio.Event()
        self.on_offer: Callable[[ActiveContract], None] | None = None

    def offer(self, active: ActiveContract) -> None:
        """Queue a verified contract; it starts at its valid_from (or at once if already valid)."""
        self.pending = active
        self._wake.set()
        if self.on_offer is not None:
            self.on_offer(active)

    async def run(self, resume: tuple[ActiveContract, EngineState] | None = None) -> None:
        """Run forever (until cancelled), switching segments as contracts arrive."""
        if resume is not None:
            await self._start_segment(resume[0], resume[1], resumed=True)
        while True:
            raise_if_cancelled()
            if self.segment is None:
                await self._wait_for_contract()
                continue
            await self._run_segment(self.segment)

    async def _wait_for_contract(self) -> None:
        self._wake.clear()
        if self.pending is None:
            await self._wake.wait()
        if self.pending is not None:
            active, self.pending = self.pending, None
            await self._start_segment(active, None, resumed=False)

    async def _start_segment(self, active: ActiveContract, state: EngineState | None,
                             *, resumed: bool) -> None:
        seg = Segment(active, state, self.link, model_after_s=self.model_after_s)
        anchor = make_anchor(active.contract.scan_period_ms)
        boot = BootBody(boot_id=uuid.uuid4().hex, t0_ms=anchor.wall_ms,
                        period_ms=anchor.period_ms, contract=active.contract.contract,
                        version=active.contract.version, hash=active.hash, state=seg.state,
                        resumed=resumed)
        await self.journal.append_many([item(boot, anchor.wall_ms)])
        self.segment, self._anchor, self.conn.changed = seg, anchor, True
        log.info("segment_started contract=%s version=%s resumed=%s t0_ms=%s",
                 active.contract.contract, active.contract.version, resumed, anchor.wall_ms)

    async def _run_segment(self, seg: Segment) -> None:
        anchor: Anchor = self._anchor
        k, next_keyframe = 0, anchor.wall_ms
        await self._sync_outputs(seg, anchor.wall_ms)
        while self.segment is seg:
            raise_if_cancelled()
            await sleep_until(anchor.deadline(k))
            started = time.monotonic()
            run_k, skipped = plan_next(anchor, k, started)
            now_ms = anchor.wall(run_k)
            if skipped:
                try:
                    await self._journal_overrun(anchor, k, run_k, started)
                except JournalError as exc:  # a full disk must not stop the loop keeping safe
                    await self._journal_down(seg, exc, now_ms)
            if seg.forced_safe is not None:
                await self._hold_forced_safe(seg, now_ms)
                if await self._try_recover(seg, now_ms):
                    return  # a new segment took over; run() continues with it
                k = run_k + 1
                continue
            keyframe = now_ms >= next_keyframe
            if keyframe:
                next_keyframe = now_ms + self._keyframe_ms
            try:
                report = await self.cycle(seg, now_ms, keyframe=keyframe)
            except JournalError as exc:
                await self._journal_down(seg, exc, now_ms)
                k = run_k + 1
                continue
            report.late_ms = (started - anchor.deadline(run_k)) * 1000.0
            report.duration_ms = (time.monotonic() - started) * 1000.0
            self._account(report, anchor.period_ms)
            k = run_k + 1
            await self._maybe_switch(now_ms + anchor.period_ms)

    async def cycle(self, seg: Segment, now_ms: EpochMs, *, keyframe: bool = False) -> CycleReport:
        """One scan cycle at engine time `now_ms`. Public so tests can drive cycles directly."""
        raw = await self.link.read(seg.plan, now_ms)
        items = seg.read_faults(raw, now_ms)
        guarded = seg.guards.apply(raw)
        seg.remember_good(guarded, now_ms)
        view, changes = seg.view.update(guarded, now_ms, keyframe=keyframe)
        inputs = self._inputs(view)
        result = seg.engine.step(seg.state, inputs, now_ms)
        seg.note_trip(result)
        items += seg.model_check(result.state, guarded, now_ms)
        items += cycle_items(now_ms, changes, inputs, result,
                             connectivity_changed=self._take_conn_change())
        if keyframe:
            items.append(keyframe_item(now_ms, view, result, seg.step_name()))
        extra_items, extra = seg.actuator.plan(result, raw, now_ms)
        acked = await self._commit_and_write(seg, items + extra_items, result, extra, now_ms)
        await self._verify_safe(seg, acked, dict(result.state.outputs), now_ms)
        await self._checkpoint(seg, result.state, now_ms)
        # "Healthy" is about the loop keeping its deadlines (set in _account), not about the
        # device: a device fault is handled by safe_state, and restarting the agent cannot fix it.
        return CycleReport(now_ms=now_ms, late_ms=0.0, duration_ms=0.0, result=result,
                           view=view, healthy=True)

    def _inputs(self, view: dict[str, Reading]) -> Inputs:
        online, contact = self.conn.inputs_view()
        commands = tuple(self.commands)
        self.commands.clear()
        return Inputs(readings=view, online=online, last_contact_ms=contact, commands=commands)

    def _take_conn_change(self) -> bool:
        changed, self.conn.changed = self.conn.changed, False
        return changed

    async def _commit_and_write(self, seg: Segment, items: list[Any], result: StepResult,
                                extra: list[str], now_ms: EpochMs) -> list[str]:
        if items:
            await self.journal.append_many(items)
        seg.state = result.state
        engine = [w.point for w in result.writes]
        return await seg.actuator.write(self.journal, engine, extra, dict(result.state.outputs),
                                        now_ms)

    async def _verify_safe(self, seg: Segment, acked: list[str], targets: dict[str, Any],
                           now_ms: EpochMs) -> None:
        """Safe state re-asserted and acknowledged this cycle: read it back at once, so the
        confirmation (journaled) does not wait for the next cycle."""
        act = seg.actuator
        if not act.verifying or not any(n in act.keeper.unconfirmed for n in acked):
            return
        raw = await self.link.read(seg.write_plan, now_ms)
        items = act.verify(raw, now_ms, targets)
        if items:
            await self.journal.append_many(items)

    async def _checkpoint(self, seg: Segment, state: EngineState, now_ms: EpochMs) -> None:
        """Persist the engine state when it changed. `last_ms` is left out: it moves every cycle,
        and a restored one would let a rate-limited ramp jump by the whole downtime on the first
        cycle after a restart (with none, the engine holds ramps for that cycle)."""
        state = replace(state, last_ms=None)
        if state == seg.checkpointed:
            return
        seq, _ = await self.journal.head()
        await self.journal.save_checkpoint(CHECKPOINT_NAME, encode_checkpoint(seg.active.hash, state),
                                           seq, now_ms)
        seg.checkpointed = state

    async def _sync_outputs(self, seg: Segment, now_ms: EpochMs) -> None:
        """At a segment's start the device holds whatever it held: assert the engine's outputs
        once (journaled as an event, not as engine writes, so replay stays exact)."""
        outputs = dict(seg.state.outputs)
        await self.journal.append_many([item(agent_event_body(AgentEvent.OUTPUT_SYNC, writes=outputs),
                                             now_ms)])
        await seg.actuator.write(self.journal, list(outputs), [], outputs, now_ms)

    async def _journal_down(self, seg: Segment, exc: JournalError, now_ms: EpochMs) -> None:
        """The journal cannot commit (disk full, I/O error). Journal-first forbids acting on what
        cannot be recorded, so the outputs go to safe_state (written directly, re-asserted every
        period until the read-back confirms them) and the engine stops advancing until the
        journal takes writes again."""
        if seg.forced_safe is not None:
            return
        log.critical("journal_unavailable error=%s: outputs forced to safe_state", exc)
        seg.forced_safe = {"since_ms": now_ms, "error": str(exc)[:300], "writes": {}}
        await self._hold_forced_safe(seg, now_ms)

    async def _hold_forced_safe(self, seg: Segment, now_ms: EpochMs) -> None:
        """One period of forced safe state: read back, re-write what is not confirmed."""
        assert seg.forced_safe is not None
        await seg.actuator.hold_forced(self.journal, seg.plan, seg.write_plan, seg.forced_safe, now_ms)

    async def _try_recover(self, seg: Segment, now_ms: EpochMs) -> bool:
        """Probe the journal; once it commits again, record the outage and start a new segment
        from the engine's (frozen) state, so replay treats the outage as a gap between segments."""
        try:
            await self.journal.append_many([item(agent_event_body(
                AgentEvent.JOURNAL_RECOVERED, **(seg.forced_safe or {})), now_ms)])
            await self._start_segment(seg.active, seg.state, resumed=True)
        except JournalError:
            return False
        log.warning("journal_recovered down_since_ms=%s", (seg.forced_safe or {}).get("since_ms"))
        return True

    async def _journal_overrun(self, anchor: Anchor, k: int, run_k: int, now_mono: float) -> None:
        late_ms = int((now_mono - anchor.deadline(k)) * 1000)
        await self.journal.append_many([overrun_item(anchor.wall(k), late_ms, run_k - k,
                                                     anchor.wall(run_k))])
        self.stats.overruns += 1
        self.stats.skipped += run_k - k
        log.warning("scan_overrun late_ms=%s skipped=%s", late_ms, run_k - k)

    def _account(self, report: CycleReport, period_ms: int) -> None:
        self.stats.cycles += 1
        self.stats.lateness_ms.append(report.late_ms)
        if report.duration_ms > period_ms:
            report.healthy = False
        if self._on_cycle is not None:
            self._on_cycle(report)

    async def _maybe_switch(self, next_ms: EpochMs) -> None:
        p = self.pending
        if p is not None and next_ms >= p.contract.valid_from:
            self.pending = None
            await self.journal.append_many([item(ContractBody(
                event=ContractChange.ACTIVATED, contract=p.contract.contract,
                version=p.contract.version, hash=p.hash), next_ms)])
            await self._start_segment(p, None, resumed=False)
