"""EndpointSet: the agent's named endpoints as the one DeviceLink the scan loop sees.

Theory of operation — each endpoint is its own failure domain:
- Every endpoint has its own link (agent/modbus.py: its connection, timeout, reconnect backoff,
  probes) and its own lane (agent/endpoint_lane.py): one I/O task at a time, and its latest
  answer per point.
- `read(plan)` splits the plan by endpoint (requests are already coalesced per (endpoint, unit,
  table): agent/registers.py), starts a read on every endpoint that is not busy, and waits for
  those together until the cycle's I/O deadline (`pace`); one still busy from an earlier cycle
  is not waited for (its answer is used when it comes). Each point then gets its
  endpoint's latest answer — this cycle's, or a late one from the cycle before — for at most the
  endpoint's own timeout, then BAD "timeout". An endpoint still busy is not asked again. So a dead
  or slow endpoint never delays the others: it costs a cycle at most the wait until the deadline,
  and its points go BAD within its own timeout, as a single link's would.
- `write(point)` goes to the point's endpoint, bounded by the same deadline: it waits for the
  endpoint's request in flight, then sends. An endpoint still busy at the deadline refuses it
  unsent ("busy"); one not answered by the deadline raises "timeout" (it may have landed — the
  read-back decides, as for a single link). An acknowledged write drops the held answers of its
  addresses.
- A request started after the deadline (the read-back of a write just acknowledged) still gets
  MIN_WAIT_S: an endpoint that is up answers in well under that.
- Two exceptions keep a device that is merely slow from tripping a contract for nothing (a BAD
  guarded input trips it: contracts/guards.py): an endpoint's first read waits for its answer (up
  to its own timeout), so start-up has values; and with ONE endpoint there is no other to protect,
  so its reads are bounded by its own timeout only, exactly as a single link (no deadline).
A point that names no endpoint is on the default one: the only one, or the legacy `[modbus]` one
(named `modbus`) beside others. A contract naming an endpoint the agent does not have, or naming
none where there is no default, is refused before it runs (`check_contract`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.endpoint_config import LEGACY_NAME, Endpoint
from agent.errors import DeviceLinkError
from agent.endpoint_lane import Lane
from agent.link import DeviceLink, bad_readings
from agent.modbus import ModbusLink
from agent.registers import ReadRequest
from contracts.errors import ContractRefused, Refusal
from contracts.inputs import Reading
from contracts.schema import Contract, Point
from contracts.types import EpochMs, PointName, Value

log = logging.getLogger("fieldpact.agent.endpoints")

MIN_WAIT_S = 0.002
"""What a request started after the cycle's I/O deadline still waits: a Modbus TCP device on a LAN
answers in well under a millisecond, a serial one at 115200 baud in about two."""

BUSY = "busy"
"""A write refused before sending: the endpoint's previous request has not finished."""


class EndpointSet:
    """A DeviceLink over named endpoints; `links` maps each name to its link."""

    def __init__(self, links: Mapping[str, DeviceLink], *, default: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not links:
            raise ValueError("an EndpointSet needs at least one endpoint")
        self._lanes = {name: Lane(name, link, clock) for name, link in links.items()}
        if default is None and len(links) == 1:
            default = next(iter(links))
        elif default is None and LEGACY_NAME in links:
            default = LEGACY_NAME
        self.default = default
        self._single = next(iter(links.values())) if len(links) == 1 else None
        """With one endpoint, its link as it is: no lanes, no deadline (see the module docstring)."""
        """Where a point naming no endpoint is; None: such points are refused (several, no legacy)."""
        self._deadline: float | None = None
        self._clock = clock

    @classmethod
    def from_config(cls, endpoints: Sequence[Endpoint]) -> EndpointSet:
        """One ModbusLink per configured endpoint."""
        return cls({ep.name: ModbusLink.for_endpoint(ep) for ep in endpoints})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._lanes)

    def link(self, name: str) -> DeviceLink:
        return self._lanes[name].link

    def link_for(self, endpoint: str | None) -> DeviceLink | None:
        """The link of a point naming `endpoint` (None: the default one); None when there is none.
        Reads made on it directly bypass the lanes: commissioning (agent/commission_run.py) asks
        the device itself, queued behind the scan's request in flight (agent/modbus.py)."""
        lane = self._lane_of(endpoint)
        return None if lane is None else lane.link

    def busy(self, name: str) -> bool:
        """Whether endpoint `name` still runs an earlier request."""
        return self._lanes[name].busy

    def late(self, name: str) -> int:
        """How many of endpoint `name`'s requests missed their cycle's deadline."""
        return self._lanes[name].late

    @property
    def connected(self) -> bool:
        """Whether every endpoint is up."""
        return all(lane.link.connected for lane in self._lanes.values())

    def check_contract(self, contract: Contract) -> None:
        """Raises ContractRefused (INVALID) naming the first point whose endpoint is not one of
        this agent's, or that names none when the agent has no default endpoint."""
        have = ", ".join(sorted(self._lanes))
        for p in contract.points:
            if p.endpoint is not None and p.endpoint not in self._lanes:
                raise ContractRefused(Refusal.INVALID, (
                    f"points.{p.name}.endpoint: {p.endpoint!r} is not an endpoint of this agent "
                    f"(it has {have})"))
            if p.endpoint is None and self.default is None:
                raise ContractRefused(Refusal.INVALID, (
                    f"points.{p.name}.endpoint: required, this agent has several endpoints ({have})"))

    async def connect(self) -> None:
        """Connect every endpoint at once. Raises DeviceLinkError naming those that failed (the
        others are up)."""
        lanes = list(self._lanes.values())
        results = await asyncio.gather(*(lane.link.connect() for lane in lanes), return_exceptions=True)
        failed = [(lane.name, r) for lane, r in zip(lanes, results) if isinstance(r, BaseException)]
        for _, r in failed:
            if not isinstance(r, DeviceLinkError):
                raise r
        if failed:
            raise DeviceLinkError("disconnected", "; ".join(f"{n}: {r}" for n, r in failed))

    async def close(self) -> None:
        for lane in self._lanes.values():
            if lane.task is not None and not lane.task.done():
                lane.task.cancel()
                with contextlib.suppress(BaseException):
                    await lane.task
            await lane.link.close()

    def hurry(self, interval_s: float | None) -> None:
        for lane in self._lanes.values():
            lane.link.hurry(interval_s)

    def hurry_each(self, intervals: Mapping[str, float]) -> None:
        """Hurry each endpoint named at its interval, and none of the others (agent/shared_link.py)."""
        for name, lane in self._lanes.items():
            lane.link.hurry(intervals.get(name))

    def pace(self, deadline: float | None) -> None:
        self._deadline = deadline

    def _lane_of(self, endpoint: str | None) -> Lane | None:
        name = self.default if endpoint is None else endpoint
        return None if name is None else self._lanes.get(name)

    def _wait_s(self) -> float | None:
        if self._deadline is None:
            return None
        return max(self._deadline - self._clock(), MIN_WAIT_S)

    async def read(self, plan: Sequence[ReadRequest], now_ms: EpochMs) -> dict[PointName, Reading]:
        """Every endpoint's part of `plan` at once; see the module docstring."""
        if self._single is not None:
            return await self._single.read(plan, now_ms)
        readings: dict[PointName, Reading] = {}
        asked: list[tuple[Lane, list[ReadRequest]]] = []
        started: set[asyncio.Task[Any]] = set()
        for name, requests in _split(plan, self.default).items():
            lane = self._lane_of(name)
            if lane is None:
                for request in requests:
                    readings.update(bad_readings(request, now_ms, "disconnected"))
                continue
            if not lane.busy:  # a lane still busy from an earlier cycle is not waited for
                started.add(lane.start_read(requests, now_ms))
            asked.append((lane, requests))
        if started:
            await asyncio.wait(started, timeout=self._wait_s())
            first = {t for lane, _ in asked if (t := lane.task) in started and lane.busy
                     and not lane.answered and t is not None}
            if first:  # start-up: no earlier answer to hold, wait for the link's own bound
                await asyncio.wait(first)
        for lane, requests in asked:
            if lane.busy:
                log.debug("endpoint_late endpoint=%s", lane.name,
                          extra={"event": "endpoint_late", "endpoint": lane.name})
            readings.update(lane.readings(requests, now_ms))
        return readings

    async def write(self, point: Point, value: Value) -> None:
        """Write on the point's endpoint; raises DeviceLinkError ("busy", "timeout", or the
        link's own reasons). Never retried."""
        if self._single is not None:
            return await self._single.write(point, value)
        lane = self._lane_of(point.endpoint)
        if lane is None:
            raise DeviceLinkError("disconnected", f"write {point.name}: no endpoint {point.endpoint!r}",
                                  category="config")
        if lane.busy and lane.task is not None:
            await asyncio.wait({lane.task}, timeout=self._wait_s())
        if lane.busy:
            raise DeviceLinkError(BUSY, f"write {point.name}={value!r}: endpoint {lane.name} is "
                                        "still busy with an earlier request (not sent)")
        task = lane.start_write(lane.link.write(point, value))
        done, _ = await asyncio.wait({task}, timeout=self._wait_s())
        if task not in done:
            raise DeviceLinkError("timeout", f"write {point.name}={value!r}: endpoint {lane.name} "
                                             "did not answer by the cycle's deadline")
        task.result()  # raises the link's DeviceLinkError
        lane.forget(point)


def _split(plan: Sequence[ReadRequest], default: str | None) -> dict[str | None, list[ReadRequest]]:
    """The plan's requests by endpoint name (a request naming none is the default's)."""
    by: dict[str | None, list[ReadRequest]] = {}
    for request in plan:
        by.setdefault(request.endpoint or default, []).append(request)
    return by
