"""Actuation: putting the engine's outputs on the device and making sure they are there.

The scan loop asks this, once per cycle, what to journal and write beyond the engine's own writes:
- second writers: read-backs judged against what the device *applied* (agent/readback.py);
- safe state: while it is demanded, every point whose read-back does not show it yet is written
  again, every cycle, until all are confirmed (agent/safe_state.py); meanwhile, while the device
  does not answer those points' read-backs (`LINK_LOST`), the link is told to look for the device
  every scan period (`DeviceLink.hurry`), so a device that answers again is found within one
  Modbus timeout plus a scan period, not after the reconnect backoff. A device that *answers* —
  with an exception (an illegal address), or with a value that is not the safe one — is no link
  failure: hurrying would not confirm anything, and a hurried link leaves the rest of a read BAD
  after one slow reply, which would take the other contracts' reads on that link down with it
  (their guarded inputs trip: one contract's bad register must not do that);
- after a link loss (a read that timed out or found the link down), the first cycle whose
  read-backs are good again writes every owned output the engine demands now, journaled as EVENT
  `output_reassert` {points}; the next cycle's read-back verifies it (a difference from an
  acknowledged value is a second writer).
Only the engine's writes are journaled as OUTPUT (replayed); the rest are EVENTs (not replayed).
A failed re-assertion is not journaled each cycle: `safe_unconfirmed` carries the attempt count.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from agent.errors import DeviceLinkError
from agent.faults import write_fault
from agent.link import DeviceLink
from agent.readback import Divergence, ReadbackMonitor, shows
from agent.cycle_items import fault_item
from agent.registers import ReadRequest
from agent.safe_state import SAFE_MODES, SafeKeeper, SafeView
from agent.shared_link import SharedLink
from contracts.engine import StepResult
from contracts.inputs import Reading
from contracts.journal_events import AgentEvent, EventBody, Item, agent_event_body, decode, item
from contracts.outputs import compile_outputs, safe_plan
from contracts.schema import Contract, Point
from contracts.types import EpochMs, PointName, Value

log = logging.getLogger("fieldpact.agent.actuation")


class Appender(Protocol):
    """Where a segment journals (agent/segment.py's SegmentJournal tags with its contract)."""

    async def append_many(self, items: Sequence[Item]) -> Any: ...


LINK_LOST = frozenset({"timeout", "disconnected"})
"""Read failures that mean the link (not the request) failed: an exception response is an answer."""


class Actuator:
    """One segment's outputs on one device link."""

    def __init__(self, contract: Contract, link: DeviceLink) -> None:
        self.link = link
        owned = [p for p in contract.write_points if p.owner == contract.contract]
        self.points: dict[PointName, Point] = {p.name: p for p in owned}
        self.readback = ReadbackMonitor(owned)
        self.keeper = SafeKeeper(owned)
        outs = compile_outputs(contract)
        self.safe_targets = dict(zip((o.name for o in outs), safe_plan(contract, outs).targets))
        self.period_s = contract.scan_period_ms / 1000
        self.link_lost = False
        self.write_faults: dict[PointName, str] = {}  # the last write failed: why, in words

    def safe_view(self) -> SafeView | None:
        return self.keeper.view()

    def device_shows(self, name: PointName, commanded: Value, actual: Value) -> bool:
        """Whether the read-back `actual` of owned point `name` shows `commanded`."""
        return shows(self.points[name], commanded, actual)

    def plan(self, result: StepResult, raw: Mapping[PointName, Reading],
             now_ms: EpochMs) -> tuple[list[Item], list[PointName]]:
        """(journal items, points to write besides the engine's writes) for one cycle."""
        items = divergence_items(self.readback.check(raw), now_ms)
        demand = dict(result.state.outputs)
        extra: list[PointName] = []
        if result.state.mode in SAFE_MODES:
            missing, found = self.keeper.cycle(demand, raw, now_ms)
            items, extra = items + found, list(missing)
            _log_safe(found)
        else:
            self.keeper.leave()
        if self._link_regained(raw):
            items.append(item(agent_event_body(AgentEvent.OUTPUT_REASSERT, points=demand), now_ms))
            extra += [n for n in self.points if n not in extra]
            log.warning("output_reassert points=%s", ",".join(sorted(demand)))
        self._hurry(raw)
        return items, extra

    def verify(self, raw: Mapping[PointName, Reading], now_ms: EpochMs,
               targets: Mapping[PointName, Value]) -> list[Item]:
        """Journal items from re-reading the points just re-asserted (see SafeKeeper.verify)."""
        items = self.keeper.verify(targets, raw, now_ms)
        self._hurry(raw)
        _log_safe(items)
        return items

    @property
    def verifying(self) -> bool:
        """Whether safe state is still unconfirmed after this cycle's writes."""
        return bool(self.keeper.active and self.keeper.unconfirmed)

    async def hold_forced(self, journal: Appender, plan: Sequence[ReadRequest],
                          write_plan: Sequence[ReadRequest], forced: dict[str, Any],
                          now_ms: EpochMs) -> None:
        """One period of safe state forced while the journal is down: read back, re-write what
        the device does not show, read that back. Nothing can be journaled: the attempt state is
        logged, and `forced` (journaled on recovery) records the writes and `confirmed_ms`."""
        raw = await self.link.read(plan, now_ms)
        missing, found = self.keeper.cycle(self.safe_targets, raw, now_ms)
        for name in await self.write(journal, [], missing, self.safe_targets, now_ms):
            forced["writes"][name] = self.safe_targets[name]
        if missing:
            raw = await self.link.read(write_plan, now_ms)
            found += self.keeper.verify(self.safe_targets, raw, now_ms)
        for _, body, _ in found:
            log.error("forced_safe %s", " ".join(f"{k}={v}" for k, v in body.items()))
        self._hurry(raw)
        if not self.keeper.unconfirmed and "confirmed_ms" not in forced:
            forced["confirmed_ms"] = now_ms - forced["since_ms"]

    def _link_regained(self, raw: Mapping[PointName, Reading]) -> bool:
        if any(r.reason in LINK_LOST for r in raw.values()):
            self.link_lost = True
            return False
        back = all(raw.get(n) is not None and raw[n].good for n in self.points)
        if self.link_lost and back:
            self.link_lost = False
            return True
        return False

    def _hurry(self, raw: Mapping[PointName, Reading]) -> None:
        """Hurry the link while a point of the unconfirmed safe state is unconfirmed because the
        device did not answer its read-back (or it was not read); None otherwise."""
        unanswered = [n for n in self.keeper.unconfirmed
                      if (r := raw.get(n)) is None or r.reason in LINK_LOST]
        interval = self.period_s if unanswered else None
        if isinstance(self.link, SharedLink):  # only the endpoints that do not answer hurry
            self.link.hurry(interval, frozenset(self.points[n].endpoint for n in unanswered))
        else:
            self.link.hurry(interval)

    async def write(self, journal: Appender, engine: Sequence[PointName], extra: Sequence[PointName],
                    values: Mapping[PointName, Value], now_ms: EpochMs) -> list[PointName]:
        """Write the engine's points, then the extra ones; journal failures of the engine's writes
        (a failed re-assertion is counted by the safe keeper instead). Returns the points acked."""
        acked: list[PointName] = []
        for name in [*engine, *(n for n in extra if n not in engine)]:
            try:
                await self.link.write(self.points[name], values[name])
            except DeviceLinkError as exc:
                self.readback.failed(name, exc.reason)
                fault = write_fault(exc, self.points[name])
                self.write_faults[name] = fault.reason
                if name in engine:
                    await journal.append_many([fault_item(now_ms, "write", name, fault)])
                continue
            self.write_faults.pop(name, None)
            self.readback.acknowledged(name, values[name])
            acked.append(name)
        return acked


def _log_safe(items: Sequence[Item]) -> None:
    for kind, body, _ in items:
        record = decode(kind, body)
        assert isinstance(record, EventBody)  # safe_state.SafeKeeper journals events only
        fields = " ".join(f"{k}={','.join(v) if isinstance(v, list) else v}"
                          for k, v in record.fields.items())
        level = logging.WARNING if record.event is AgentEvent.SAFE_UNCONFIRMED else logging.INFO
        log.log(level, "%s %s", record.event, fields)


def divergence_items(found: Sequence[Divergence], now_ms: EpochMs) -> list[Item]:
    for d in found:
        log.warning("second_writer point=%s expected=%s actual=%s cleared=%s",
                    d.point, d.expected, d.actual, d.cleared)
    return [item(agent_event_body(
        AgentEvent.SECOND_WRITER_CLEARED if d.cleared else AgentEvent.SECOND_WRITER,
        point=d.point, expected=d.expected, actual=d.actual), now_ms) for d in found]
