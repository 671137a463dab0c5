"""ModbusLink: the DeviceLink over Modbus TCP, on pymodbus's AsyncModbusTcpClient.

Theory of operation:
- We own the retry and reconnect policy, so pymodbus's are off (retries=0, reconnect_delay=0).
- One pymodbus client per TCP connection. After a timeout mid-transaction the connection is closed
  and a *new* client is made on reconnect: a reply that arrives late can then never be taken as the
  answer to a later request (pymodbus issue tracker: transaction ids out of step, see DESIGN).
- While disconnected, `read()` answers BAD "disconnected" at once. A connect attempt is made from
  `read()` only when the backoff allows it (exponential with jitter), never once per scan period.
- Each request runs under our own deadline (asyncio.timeout) as well as pymodbus's timeout.
- Writes are never retried: a write that timed out may have reached the device.

Bound on blocking: while disconnected, read() returns at once unless the backoff allows a connect
attempt (at most timeout_s). After a request times out, the rest of the plan goes out on one fresh
connection; a second timeout in the same read() leaves the rest BAD "disconnected" at once. So one
read() blocks at most about 4 x timeout_s, and only when the device answers neither promptly nor never.

Hurry (safe state not yet confirmed on the device): the backoff could leave a device that answers
again unvisited for up to its 5 s cap, and a hung device accepts TCP connections, so a connect says
nothing. While `hurry(interval_s)` is set, reconnecting is done by a background *probe* instead: a
fresh client connects and sends the first request of the last plan; only an answer makes it the
link's client. At most one probe is in flight (a device may accept only a few connections), one
starts at most every interval_s (the scan period), and the next starts as soon as one fails. A
probe waits one interval for its answer, not the whole Modbus timeout: a hung device that drops what
it received never answers the probe in flight when it comes back, so a long probe wait is what
delays confirming safe state; every PROBE_FULL_EVERY-th probe waits the full timeout, so a device
slower than one scan period (a serial gateway) is still found. read() never waits for a probe, and while
hurried a timed-out read leaves the rest of the plan BAD at once, so a hung device costs the scan
one timeout, not one per cycle; once it answers again, the link is back within one timeout plus
one interval.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from agent.link import DeviceLinkError, bad_readings, encode_for_write, exception_reason, good_readings
from agent.registers import ReadRequest
from contracts.inputs import Reading
from contracts.schema import Point, Table
from contracts.types import EpochMs, PointName, Value
from transport.backoff import Backoff, Retrier

log = logging.getLogger("fieldpact.agent.modbus")

DEFAULT_TIMEOUT_S = 0.5
"""Per-request reply timeout. A healthy Modbus TCP device on a LAN answers in a few ms; 0.5 s keeps
a dead device from eating more than a few scan periods."""

DEADLINE_MARGIN_S = 0.1
"""Our own deadline sits this far beyond pymodbus's, so pymodbus's timeout normally fires first and
ours only catches a hang inside the library."""


PROBE_FULL_EVERY = 4
"""While hurried, one probe in four waits the full Modbus timeout; the others wait one scan period.
A healthy device on a LAN answers in milliseconds, so a short wait misses only a slow one, and that
one is still found by every fourth probe (within 4 intervals + 1 timeout)."""

DEFAULT_BACKOFF = Backoff(initial_s=0.05, max_s=5.0, jitter=0.2)
"""Start retrying a device fast (a dropped TCP connection usually comes straight back) and back
off to 5 s, so a dead device costs one connect attempt per 5 s, not one per scan."""


class ModbusLink:
    """A DeviceLink to one Modbus TCP endpoint (any unit ids behind it)."""

    def __init__(self, host: str, port: int, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 backoff: Backoff | None = None, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.backoff = Retrier(backoff or DEFAULT_BACKOFF, rng)
        self._clock = clock
        self._client: AsyncModbusTcpClient | None = None
        self._next_attempt = 0.0
        self._closed = False
        self._hurry_s: float | None = None
        self._probe: asyncio.Task[AsyncModbusTcpClient | None] | None = None
        self._probe_due = 0.0
        self._probe_timer: asyncio.TimerHandle | None = None
        self._last_plan: ReadRequest | None = None
        self.attempts = 0
        self.connects = 0
        self.probes = 0

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        """One connect attempt bounded by timeout_s. Raises DeviceLinkError("disconnected") on failure
        and schedules the next attempt by the backoff."""
        self._closed = False
        if self.connected:
            return
        if not await self._attempt_connect():
            raise DeviceLinkError("disconnected", f"cannot connect to {self.host}:{self.port}")

    async def close(self) -> None:
        """Close and stay closed: read() will not reconnect until connect() is called again."""
        self._closed = True
        self._drop()
        await self._cancel_probe()

    def hurry(self, interval_s: float | None) -> None:
        """While set, reconnect by background probes at most every `interval_s` (see the module
        docstring); None returns to the backoff."""
        self._hurry_s = interval_s

    async def read(self, plan: Sequence[ReadRequest], now_ms: EpochMs) -> dict[PointName, Reading]:
        """Execute `plan`. Never raises for I/O; see the module docstring for the reasons."""
        if plan:
            self._last_plan = plan[0]
        await self._ensure_connected()
        readings: dict[PointName, Reading] = {}
        fresh_socket_used = self._hurry_s is not None  # hurried: the probe reconnects, not us
        for request in plan:
            if not self.connected:
                readings.update(bad_readings(request, now_ms, "disconnected"))
                continue
            result = await self._read_one(request, now_ms)
            readings.update(result)
            if _timed_out(result) and not fresh_socket_used:
                # One slow reply should cost one request, not the rest of the cycle: the rest of
                # the plan goes out on a fresh socket. Only once per read(), to bound the blocking.
                fresh_socket_used = True
                await self._attempt_connect()
        return readings

    async def write(self, point: Point, value: Value) -> None:
        """Write with FC5 (coil), FC6 (one register) or FC16 (several). Never retried. Raises
        DeviceLinkError ("disconnected", "timeout", "exception <code> (<words>) at <where>",
        "not_writable", "encode")."""
        raw = encode_for_write(point, value)
        client = self._client
        if client is None or not client.connected:
            raise DeviceLinkError("disconnected", f"write {point.name}={value!r}: link is down")
        where = f"write {point.name}={value!r} at unit {point.unit_id} {point.table.value}:{point.address}"
        count = 1 if isinstance(raw, bool) else len(raw)
        reason = await self._call(lambda: _write_call(client, point, raw), point.unit_id, point.table,
                                  point.address, count)
        if isinstance(reason, str):
            raise DeviceLinkError(reason, where)

    # ------------------------------------------------------------------------------ internals

    async def _ensure_connected(self) -> None:
        if self._closed:
            return
        if self._client is not None and not self._client.connected:
            self._lose("connection_lost")  # the peer closed it: reconnect by the backoff too
        if self.connected or self._adopt_probe():
            return
        if self._hurry_s is not None:
            self._maybe_probe()
        elif self._clock() >= self._next_attempt:
            await self._attempt_connect()

    # -- probes (while hurried) ---------------------------------------------------------------

    def _adopt_probe(self) -> bool:
        """Take a finished probe's client if it got an answer; True when the link is up again."""
        probe = self._probe
        if probe is None or not probe.done():
            return False
        self._probe = None
        client = None if probe.cancelled() or probe.exception() else probe.result()
        if client is None or not client.connected:
            return False
        self._client, self.connects = client, self.connects + 1
        self.backoff.reset()
        log.info("modbus_connected host=%s port=%d by=probe", self.host, self.port,
                 extra={"event": "modbus_connected", "host": self.host, "port": self.port})
        return True

    def _maybe_probe(self) -> None:
        """From read(): schedule a probe half an interval after this cycle's read, so one that
        is answered at once is adopted by the next cycle's read, not the one after."""
        if self._probe_timer is None and self._may_probe():
            delay = max(self._probe_due - self._clock(), (self._hurry_s or 0.0) / 2)
            self._probe_timer = asyncio.get_running_loop().call_later(delay, self._start_probe)

    def _may_probe(self) -> bool:
        return (self._hurry_s is not None and not self.connected and not self._closed
                and self._probe is None and self._last_plan is not None)

    def _start_probe(self) -> None:
        self._probe_timer = None
        if not self._may_probe():
            return
        assert self._last_plan is not None and self._hurry_s is not None
        self._probe_due = self._clock() + self._hurry_s
        self.probes += 1
        probe = self._probe_once(self._last_plan, self._probe_timeout())
        self._probe = asyncio.create_task(probe,
                                          name=f"modbus-probe-{self.host}:{self.port}")
        self._probe.add_done_callback(self._probe_done)

    def _probe_done(self, task: asyncio.Task[AsyncModbusTcpClient | None]) -> None:
        """A failed probe is followed by the next one as soon as the interval allows (not at the
        next read()), so a device that answers again is found within one timeout + one interval."""
        failed = task.cancelled() or task.exception() is not None or task.result() is None
        if failed and self._probe is task and not self._closed:
            self._probe = None
            with contextlib.suppress(RuntimeError):  # the loop is closing
                delay = max(0.0, self._probe_due - self._clock())
                self._probe_timer = asyncio.get_running_loop().call_later(delay, self._start_probe)

    def _probe_timeout(self) -> float:
        """How long this probe waits for its answer (see the module docstring, Hurry)."""
        if self._hurry_s is None or self.probes % PROBE_FULL_EVERY == 0:
            return self.timeout_s
        return min(self.timeout_s, self._hurry_s)

    async def _probe_once(self, request: ReadRequest,
                          timeout_s: float) -> AsyncModbusTcpClient | None:
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=timeout_s, retries=0,
                                      reconnect_delay=0, name=f"fieldpact-probe-{self.host}:{self.port}")
        try:
            async with asyncio.timeout(2 * (timeout_s + DEADLINE_MARGIN_S)):
                if await client.connect() and await _answered(client, request):
                    return client
        except (TimeoutError, OSError, ModbusException):
            pass
        except asyncio.CancelledError:
            client.close()
            raise
        client.close()
        return None

    async def _cancel_probe(self) -> None:
        if self._probe_timer is not None:
            self._probe_timer.cancel()
            self._probe_timer = None
        probe, self._probe = self._probe, None
        if probe is None:
            return
        probe.cancel()
        with contextlib.suppress(BaseException):
            client = await probe
            if client is not None:
                client.close()

    async def _attempt_connect(self) -> bool:
        self._drop()
        self.attempts += 1
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.timeout_s, retries=0,
                                      reconnect_delay=0, name=f"fieldpact-{self.host}:{self.port}")
        try:
            async with asyncio.timeout(self.timeout_s + DEADLINE_MARGIN_S):
                ok = await client.connect()
        except (TimeoutError, OSError, ModbusException):
            ok = False
        if not ok:
            client.close()
            self._schedule_retry()
            return False
        self._client, self.connects = client, self.connects + 1
        log.info("modbus_connected host=%s port=%d", self.host, self.port,
                 extra={"event": "modbus_connected", "host": self.host, "port": self.port})
        return True

    def _schedule_retry(self) -> None:
        delay = self.backoff.next_delay()
        self._next_attempt = self._clock() + delay
        log.info("modbus_connect_failed host=%s port=%d retry_in_s=%.3f", self.host, self.port, delay,
                 extra={"event": "modbus_connect_failed", "host": self.host, "port": self.port})

    def _drop(self, reason: str = "closed") -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
            log.info("modbus_disconnected host=%s port=%d reason=%s", self.host, self.port, reason,
                     extra={"event": "modbus_disconnected", "host": self.host, "port": self.port,
                            "reason": reason})

    def _lose(self, reason: str) -> None:
        """The connection can no longer be trusted: close it and reconnect only after backoff."""
        self._drop(reason)
        self._schedule_retry()

    async def _read_one(self, request: ReadRequest, now_ms: EpochMs) -> dict[PointName, Reading]:
        client = self._client
        assert client is not None  # read() checked `connected` just before
        result = await self._call(lambda: _read_call(client, request), request.unit_id, request.table,
                                  request.start, request.count)
        if isinstance(result, str):
            return bad_readings(request, now_ms, result)
        values = result.bits if request.table.is_bit else result.registers
        return good_readings(request, values, now_ms)

    async def _call(self, make: Callable[[], Awaitable[ModbusPDU]], unit: int, table: Table,
                    start: int, count: int) -> ModbusPDU | str:
        """Run one request under our deadline. Returns the response PDU, or the BAD reason."""
        try:
            async with asyncio.timeout(self.timeout_s + DEADLINE_MARGIN_S):
                response = await make()
        except (TimeoutError, ModbusIOException, ConnectionException, OSError) as exc:
            return self._failed(exc, unit, table, start)
        self.backoff.reset()  # only an answer proves the device is back, not an accepted socket
        if response.isError():
            return exception_reason(response.exception_code, table, start, count, unit)
        return response

    def _failed(self, exc: Exception, unit: int, table: Table, start: int) -> str:
        lost = not self.connected or isinstance(exc, ConnectionException)
        if not lost:
            log.warning("modbus_timeout unit=%d table=%s start=%d", unit, table.value, start,
                        extra={"event": "modbus_timeout", "unit": unit, "table": table.value,
                               "start": start})
        reason = "disconnected" if lost else "timeout"
        self._lose(reason)  # a late reply must never answer a later request: never reuse this socket
        return reason


PROBE_POLL_S = 0.01
"""How often a probe checks that its connection is still open: pymodbus keeps waiting for a reply
on a connection the peer closed until its timeout, and a cut link closes at once."""


async def _answered(client: AsyncModbusTcpClient, request: ReadRequest) -> bool:
    """Whether the device answers `request` (any answer, even an exception) before the client's
    timeout; False as soon as the connection is closed under it."""
    call = asyncio.ensure_future(_read_call(client, request))
    try:
        while not call.done():
            if not client.connected:
                return False
            await asyncio.wait({call}, timeout=PROBE_POLL_S)
        call.result()
        return True
    finally:
        if not call.done():
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)


def _timed_out(readings: dict[PointName, Reading]) -> bool:
    return any(r.reason == "timeout" for r in readings.values())


def _read_call(client: AsyncModbusTcpClient, request: ReadRequest) -> Awaitable[ModbusPDU]:
    read = {
        Table.COIL: client.read_coils, Table.DISCRETE: client.read_discrete_inputs,
        Table.HOLDING: client.read_holding_registers, Table.INPUT: client.read_input_registers,
    }[request.table]
    return read(request.start, count=request.count, device_id=request.unit_id)


def _write_call(client: AsyncModbusTcpClient, point: Point, raw: list[int] | bool) -> Awaitable[ModbusPDU]:
    if isinstance(raw, bool):
        return client.write_coil(point.address, raw, device_id=point.unit_id)
    if len(raw) == 1:
        return client.write_register(point.address, raw[0], device_id=point.unit_id)
    return client.write_registers(point.address, raw, device_id=point.unit_id)
