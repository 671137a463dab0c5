"""One endpoint's lane: its link, its one I/O task in flight, and its latest answer per point.

Rules (agent/endpoints.py runs one lane per endpoint):
- At most one request task at a time (a serial line takes one frame at a time; a TCP device gets
  no pile of requests while it is slow). `busy` while it runs.
- Every answer (GOOD or BAD readings) is kept per point with the monotonic time its read was
  *asked* (the device showed that value at or after it), whichever cycle asked: an answer that
  arrives after its cycle's deadline is not lost, the next cycle uses it. (Not the time it
  arrived: a read whose first requests were answered just before the device hung, and whose last
  one timed out, must not make those first answers look fresh.)
- `readings()` gives each requested point its latest answer, stamped with this cycle's time, as
  long as that answer is at most `hold_s` old (the endpoint's own timeout: a single link that
  waited its timeout would not have known better); else BAD "timeout". So a slow endpoint keeps
  its values by a cycle or two without flapping, and a dead one goes BAD within its timeout.
- An acknowledged write forgets the held answers of every point on the addresses it wrote (its
  own, and the same registers read under another contract's name: agent/cycle_reads.py): what the
  device showed before the write must never be taken as its read-back (a second writer).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from agent.link import DeviceLink, bad_readings
from agent.registers import ReadRequest
from contracts.inputs import Quality, Reading
from contracts.schema import Point
from contracts.types import EpochMs, PointName

log = logging.getLogger("fieldpact.agent.endpoints")

DEFAULT_HOLD_S = 0.5
"""How long an answer is held for a link that has no `timeout_s` of its own (the default Modbus
reply timeout, agent/endpoint_config.py)."""


class Lane:
    def __init__(self, name: str, link: DeviceLink, clock: Callable[[], float]) -> None:
        self.name, self.link, self._clock = name, link, clock
        self.hold_s = float(getattr(link, "timeout_s", DEFAULT_HOLD_S))
        self.task: asyncio.Task[Any] | None = None
        self.late = 0  # cycles whose read was still running at their deadline
        self._answers: dict[PointName, tuple[Reading, float, Point]] = {}
        self.answered = False  # any answer since the lane was made

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def start_read(self, requests: Sequence[ReadRequest], now_ms: EpochMs) -> asyncio.Task[Any]:
        asked_at = self._clock()
        task = self._start(self.link.read(requests, now_ms), "read")
        task.add_done_callback(lambda t: self._keep(t, requests, now_ms, asked_at))
        return task

    def start_write(self, work: Any) -> asyncio.Task[Any]:
        return self._start(work, "write")

    def _start(self, work: Any, what: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        task.set_name(f"endpoint-{self.name}-{what}")
        task.add_done_callback(_retrieve)
        self.task = task
        return task

    def _keep(self, task: asyncio.Task[Any], requests: Sequence[ReadRequest], now_ms: EpochMs,
              asked_at: float) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:  # a bug in a link must not take the other endpoints down
            log.error("endpoint_read_failed endpoint=%s error=%r", self.name, task.exception())
            result: dict[PointName, Reading] = {}
            for request in requests:
                result.update(bad_readings(request, now_ms, "disconnected"))
        else:
            result = task.result()
        self.answered = True
        for request in requests:
            for p in request.points:
                reading = result.get(p.name)
                if reading is not None:
                    self._answers[p.name] = (reading, asked_at, p)

    def forget(self, point: Point) -> None:
        """A write of `point` was acknowledged: no held answer of its addresses shows the device."""
        stale = [name for name, (_, _, p) in self._answers.items() if _overlaps(p, point)]
        for name in stale:
            del self._answers[name]

    def readings(self, requests: Sequence[ReadRequest], now_ms: EpochMs) -> dict[PointName, Reading]:
        """Each point's latest answer if asked at most hold_s ago, stamped now_ms; else BAD "timeout"."""
        if self.busy:
            self.late += 1
        oldest = self._clock() - self.hold_s
        out: dict[PointName, Reading] = {}
        for request in requests:
            for p in request.points:
                answer = self._answers.get(p.name)
                if answer is not None and answer[1] >= oldest:
                    r = answer[0]  # this cycle's answer as it is; a held one restamped
                    out[p.name] = r if r.ts_ms == now_ms else Reading(
                        value=r.value, quality=r.quality, ts_ms=now_ms, reason=r.reason)
                else:
                    out[p.name] = Reading(value=None, quality=Quality.BAD, ts_ms=now_ms,
                                          reason="timeout")
        return out


def _overlaps(a: Point, b: Point) -> bool:
    return ((a.unit_id, a.table) == (b.unit_id, b.table) and a.address <= b.last_address
            and b.address <= a.last_address)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A task left running past its deadline is awaited by nobody: take its outcome here."""
    if not task.cancelled():
        task.exception()
