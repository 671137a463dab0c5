"""Probes: how a hurried ModbusLink looks for its device again without blocking the scan.

Why (safe state not yet confirmed on the device): the reconnect backoff could leave a device that
answers again unvisited for up to its 5 s cap, and a hung device accepts TCP connections, so a
connect says nothing. While the link is hurried, reconnecting is done by a background *probe*
instead: a fresh client connects and sends the first request of the last plan; only an answer makes
it the link's client (`take`).

Rules:
- At most one probe in flight (a device may accept only a few connections); one starts at most
  every interval (the scan period), and the next starts as soon as one fails.
- A probe waits one interval for its answer, not the whole Modbus timeout: a hung device that drops
  what it received never answers the probe in flight when it comes back, so a long probe wait is
  what delays confirming safe state. Every PROBE_FULL_EVERY-th probe waits the full timeout, so a
  device slower than one scan period (a serial gateway) is still found (`probe_timeout`).
- Nothing here is awaited by read(): probes run as tasks and on loop timers.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from pymodbus.exceptions import ModbusException

from agent.endpoint_config import Endpoint
from agent.modbus_calls import DEADLINE_MARGIN_S, answered, new_client
from agent.modbus_wire import WireClient
from agent.registers import ReadRequest

PROBE_FULL_EVERY = 4
"""While hurried, one probe in four waits the full Modbus timeout; the others wait one scan period.
A healthy device on a LAN answers in milliseconds, so a short wait misses only a slow one, and that
one is still found by every fourth probe (within 4 intervals + 1 timeout)."""


def probe_timeout(probes: int, interval_s: float | None, timeout_s: float) -> float:
    """How long probe number `probes` waits for its answer: one interval (never past the Modbus
    timeout), or the full timeout when not hurried and for every PROBE_FULL_EVERY-th probe."""
    if interval_s is None or probes % PROBE_FULL_EVERY == 0:
        return timeout_s
    return min(timeout_s, interval_s)


class Prober:
    """The probes of one endpoint. `closed()` and `connected()` read the link's state (a probe is
    wanted only while it is open and down); `interval_s` is set by the link's hurry(), None when
    not hurried."""

    def __init__(self, endpoint: Endpoint, timeout_s: float, clock: Callable[[], float], *,
                 closed: Callable[[], bool], connected: Callable[[], bool]) -> None:
        self.endpoint, self.timeout_s = endpoint, timeout_s
        self._clock, self._closed, self._connected = clock, closed, connected
        self.interval_s: float | None = None
        self.request: ReadRequest | None = None  # the first request of the link's last plan
        self.probes = 0
        self._task: asyncio.Task[WireClient | None] | None = None
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def take(self) -> WireClient | None:
        """A finished probe's client if the device answered it (the caller adopts it), else None."""
        task = self._task
        if task is None or not task.done():
            return None
        self._task = None
        client = None if task.cancelled() or task.exception() else task.result()
        return client if client is not None and client.connected else None

    def schedule(self) -> None:
        """From read(): start a probe half an interval after this cycle's read, so one that is
        answered at once is taken by the next cycle's read, not the one after."""
        if self._timer is None and self._may_start():
            delay = max(self._due - self._clock(), (self.interval_s or 0.0) / 2)
            self._timer = asyncio.get_running_loop().call_later(delay, self._start)

    async def cancel(self) -> None:
        """Stop the timer and the probe in flight; close the client it may have made."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(BaseException):
            client = await task
            if client is not None:
                client.close()

    def _may_start(self) -> bool:
        return (self.interval_s is not None and not self._connected() and not self._closed()
                and self._task is None and self.request is not None)

    def _start(self) -> None:
        self._timer = None
        if not self._may_start():
            return
        assert self.request is not None and self.interval_s is not None
        self._due = self._clock() + self.interval_s
        self.probes += 1
        probe = self._once(self.request, probe_timeout(self.probes, self.interval_s, self.timeout_s))
        self._task = asyncio.create_task(probe, name=f"modbus-probe-{self.endpoint.label}")
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[WireClient | None]) -> None:
        """A failed probe is followed by the next one as soon as the interval allows (not at the
        next read()), so a device that answers again is found within one timeout + one interval."""
        failed = task.cancelled() or task.exception() is not None or task.result() is None
        if failed and self._task is task and not self._closed():
            self._task = None
            with contextlib.suppress(RuntimeError):  # the loop is closing
                delay = max(0.0, self._due - self._clock())
                self._timer = asyncio.get_running_loop().call_later(delay, self._start)

    async def _once(self, request: ReadRequest, timeout_s: float) -> WireClient | None:
        client = new_client(self.endpoint, timeout_s)
        try:
            async with asyncio.timeout(2 * (timeout_s + DEADLINE_MARGIN_S)):
                if await client.connect() and await answered(client, request):
                    return client
        except (TimeoutError, OSError, ModbusException):
            pass
        except asyncio.CancelledError:
            client.close()
            raise
        client.close()
        return None
