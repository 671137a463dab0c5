"""ModbusLink: the DeviceLink to one endpoint — Modbus TCP, Modbus RTU on a serial device, or RTU
frames over TCP (agent/endpoint_config.py) — on our WireClient (agent/modbus_wire.py).

Theory of operation:
- We own the retry and reconnect policy (the client never retries nor reconnects).
- One client per TCP connection. After a timeout mid-transaction the connection is closed
  and a *new* client is made on reconnect: a reply that arrives late can then never be taken as the
  answer to a later request (pymodbus issue tracker: transaction ids out of step, see DESIGN).
- While disconnected, `read()` answers BAD "disconnected" at once. A connect attempt is made from
  `read()` only when the backoff allows it (exponential with jitter), never once per scan period.
- Each request is bounded by the client's reply timeout (agent/modbus_wire.py, our own code).
- Writes are never retried: a write that timed out may have reached the device.
- One request on the wire at a time, whoever asks: the scan loop, a commissioning poll and the
  contracts sharing the link may call read()/write() concurrently, and their requests queue on
  the link (`_one`) in the order asked. A request that finds the connection gone while it
  queued answers "disconnected" at once (whoever lost it already scheduled the reconnect).

Bound on blocking: while disconnected, read() returns at once unless the backoff allows a connect
attempt (at most timeout_s). After a request times out, the rest of the plan goes out on one fresh
connection; a second timeout in the same read() leaves the rest BAD "disconnected" at once. So one
read() blocks at most about 4 x timeout_s, and only when the device answers neither promptly nor never.

Hurry (safe state not yet confirmed on the device): while `hurry(interval_s)` is set, reconnecting
is done by background probes (agent/modbus_probe.py) and read() never waits for one; a timed-out
read leaves the rest of the plan BAD at once, so a hung device costs the scan one timeout, not one
per cycle; once it answers again, the link is back within one timeout plus one interval.
The requests themselves are in agent/modbus_calls.py; a device's exception answers are logged
once as they start (agent/modbus_exceptions.py).

A serial line (modbus-rtu) is one connection whatever its unit ids: requests go one at a time, with
the endpoint's frame gap (3.5 characters, or byte_timeout_s) of silence before each, and "a new
connection" after a timeout means reopening the port (so a late reply is flushed with the old one).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from agent.endpoint_config import Endpoint, EndpointKind
from agent.errors import DeviceLinkError
from agent.link import bad_readings, encode_for_write, exception_reason, exception_words, good_readings
from agent.modbus_calls import DEADLINE_MARGIN_S, new_client, read_call, write_call
from agent.modbus_exceptions import ExceptionNotes
from agent.modbus_probe import Prober
from agent.modbus_wire import Answer, WireClient
from agent.registers import ReadRequest
from contracts.inputs import Reading
from contracts.schema import Point, Table
from contracts.types import EpochMs, PointName, Value
from transport.backoff import Backoff, Retrier

log = logging.getLogger("fieldpact.agent.modbus")

DEFAULT_TIMEOUT_S = 0.5
"""Per-request reply timeout. A healthy Modbus TCP device on a LAN answers in a few ms; 0.5 s keeps
a dead device from eating more than a few scan periods."""

DEFAULT_BACKOFF = Backoff(initial_s=0.05, max_s=5.0, jitter=0.2)
"""Start retrying a device fast (a dropped TCP connection usually comes straight back) and back
off to 5 s, so a dead device costs one connect attempt per 5 s, not one per scan."""


class ModbusLink:
    """A DeviceLink to one endpoint (any unit ids behind it). `ModbusLink(host, port)` is a Modbus
    TCP one; `ModbusLink.for_endpoint(ep)` any kind, with the endpoint's timeout and retry."""

    def __init__(self, host: str = "", port: int = 0, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 backoff: Backoff | None = None, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic, endpoint: Endpoint | None = None) -> None:
        self.endpoint = endpoint or Endpoint(name="modbus", kind=EndpointKind.TCP, host=host,
                                             port=port, timeout_s=timeout_s)
        self.host = self.endpoint.device if self.endpoint.kind.serial else self.endpoint.host
        self.port, self.timeout_s = self.endpoint.port, self.endpoint.timeout_s
        self.backoff = Retrier(backoff or DEFAULT_BACKOFF, rng)
        self._clock = clock
        self._client: WireClient | None = None
        self._next_attempt = 0.0
        self._closed = False
        self._quiet_until = 0.0  # serial line: the frame gap before the next request
        self._frame_gap_s = self.endpoint.frame_gap_s  # 0 on TCP; computed once, used per request
        self._exceptions = ExceptionNotes(self.endpoint.name)  # agent/modbus_exceptions.py
        self._one = asyncio.Lock()  # one request on the wire at a time (module docstring)
        self.prober = Prober(self.endpoint, self.timeout_s, clock, closed=lambda: self._closed,
                             connected=lambda: self.connected)
        self.attempts = 0
        self.connects = 0

    @classmethod
    def for_endpoint(cls, endpoint: Endpoint, *, rng: random.Random | None = None,
                     clock: Callable[[], float] = time.monotonic) -> ModbusLink:
        """A link with `endpoint`'s own reply timeout and reconnect backoff."""
        backoff = Backoff(initial_s=endpoint.retry_initial_s, max_s=endpoint.retry_max_s,
                          jitter=DEFAULT_BACKOFF.jitter)
        return cls(endpoint=endpoint, backoff=backoff, rng=rng, clock=clock)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    def pace(self, deadline: float | None) -> None:
        """Nothing to pace: one endpoint's requests are bounded by its own timeout (the set of
        endpoints in agent/endpoints.py bounds a cycle's I/O by the cycle's deadline)."""

    async def connect(self) -> None:
        """One connect attempt bounded by timeout_s. Raises DeviceLinkError("disconnected") on failure
        and schedules the next attempt by the backoff."""
        self._closed = False
        if self.connected:
            return
        if not await self._attempt_connect():
            raise DeviceLinkError("disconnected", f"cannot connect to {self.endpoint.label}")

    async def close(self) -> None:
        """Close and stay closed: read() will not reconnect until connect() is called again."""
        self._closed = True
        self._drop()
        await self.prober.cancel()

    def hurry(self, interval_s: float | None) -> None:
        """While set, reconnect by background probes at most every `interval_s` (see the module
        docstring); None returns to the backoff."""
        self.prober.interval_s = interval_s

    @property
    def probes(self) -> int:
        """How many probes have started (while hurried)."""
        return self.prober.probes

    async def read(self, plan: Sequence[ReadRequest], now_ms: EpochMs) -> dict[PointName, Reading]:
        """Execute `plan`. Never raises for I/O; see the module docstring for the reasons."""
        if plan:
            self.prober.request = plan[0]
        await self._ensure_connected()
        readings: dict[PointName, Reading] = {}
        fresh_socket_used = self.prober.interval_s is not None  # hurried: the probe reconnects, not us
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
        DeviceLinkError ("disconnected", "timeout", "exception:<code>", "not_writable", "encode")."""
        raw = encode_for_write(point, value)
        where = f"write {point.name}={value!r} at unit {point.unit_id} {point.table.value}:{point.address}"
        result = await self._call(lambda client: write_call(client, point, raw), point.unit_id,
                                  point.table, point.address)
        if result == "disconnected":  # down before it was sent, or while it queued
            raise DeviceLinkError(result, f"write {point.name}={value!r}: link is down")
        if isinstance(result, str):
            code = result.removeprefix("exception:")
            if code.isdigit():
                where += ": " + exception_words(int(code), point.table, point.address)
            raise DeviceLinkError(result, where)

    # ------------------------------------------------------------------------------ internals

    async def _ensure_connected(self) -> None:
        if self._closed:
            return
        if self._client is not None and not self._client.connected:
            self._lose("connection_lost")  # the peer closed it: reconnect by the backoff too
        if self.connected or self._adopt_probe():
            return
        if self.prober.interval_s is not None:
            self.prober.schedule()
        elif self._clock() >= self._next_attempt:
            await self._attempt_connect()

    def _adopt_probe(self) -> bool:
        """Take a finished probe's client if it got an answer; True when the link is up again."""
        client = self.prober.take()
        if client is None:
            return False
        self._client, self.connects = client, self.connects + 1
        self.backoff.reset()
        log.info("modbus_connected host=%s port=%d by=probe", self.host, self.port,
                 extra=self._fields("modbus_connected"))
        return True

    async def _attempt_connect(self) -> bool:
        async with self._one:  # never under another caller's request in flight
            if self.connected:
                return True  # another caller reconnected while this one queued
            return await self._connect_now()

    async def _connect_now(self) -> bool:
        self._drop()
        self.attempts += 1
        client = new_client(self.endpoint, self.timeout_s)
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
                 extra=self._fields("modbus_connected"))
        return True

    def _schedule_retry(self) -> None:
        delay = self.backoff.next_delay()
        self._next_attempt = self._clock() + delay
        log.info("modbus_connect_failed host=%s port=%d retry_in_s=%.3f", self.host, self.port, delay,
                 extra=self._fields("modbus_connect_failed"))

    def _drop(self, reason: str = "closed") -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
            log.info("modbus_disconnected host=%s port=%d reason=%s", self.host, self.port, reason,
                     extra=self._fields("modbus_disconnected", reason=reason))

    def _fields(self, event: str, **more: object) -> dict[str, object]:
        """A connection log record's fields: the event and which endpoint."""
        return {"event": event, "endpoint": self.endpoint.name, "host": self.host,
                "port": self.port, **more}

    def _lose(self, reason: str) -> None:
        """The connection can no longer be trusted: close it and reconnect only after backoff."""
        self._drop(reason)
        self._schedule_retry()

    async def _read_one(self, request: ReadRequest, now_ms: EpochMs) -> dict[PointName, Reading]:
        result = await self._call(lambda client: read_call(client, request), request.unit_id,
                                  request.table, request.start)
        self._exceptions.note(request, result if isinstance(result, str) else None)
        if isinstance(result, str):
            return bad_readings(request, now_ms, result)
        values = result.bits if request.table.is_bit else result.registers
        return good_readings(request, values, now_ms)

    async def _call(self, make: Callable[[WireClient], Awaitable[Answer]], unit: int, table: Table,
                    start: int) -> Answer | str:
        """Run one request on the link's connection once the request before it is done (module
        docstring), bounded by the client's own reply timeout (agent/modbus_wire.py: our code,
        which fails the request when the connection drops, so no second deadline is kept around
        it). Returns the answer, or the BAD reason ("disconnected" when the connection went
        while this request queued)."""
        async with self._one:
            client = self._client
            if client is None or not client.connected:
                return "disconnected"
            await self._keep_frame_gap()
            try:
                response = await make(client)
            except (TimeoutError, ModbusIOException, ConnectionException, OSError) as exc:
                return self._failed(client, exc, unit, table, start)
            finally:
                if self._frame_gap_s:
                    self._quiet_until = self._clock() + self._frame_gap_s
        self.backoff.reset()  # only an answer proves the device is back, not an accepted socket
        if response.isError():
            return exception_reason(response.exception_code)
        return response

    async def _keep_frame_gap(self) -> None:
        """On a serial line, the silence the spec asks between frames (0 on TCP: no wait)."""
        if not self._frame_gap_s:
            return
        wait = self._quiet_until - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)

    def _failed(self, client: WireClient, exc: Exception, unit: int, table: Table,
                start: int) -> str:
        lost = not client.connected or isinstance(exc, ConnectionException)
        if not lost:
            log.warning("modbus_timeout unit=%d table=%s start=%d", unit, table.value, start,
                        extra={"event": "modbus_timeout", "unit": unit, "table": table.value,
                               "start": start})
        reason = "disconnected" if lost else "timeout"
        if self._client is client:  # else it was dropped already, and its retry scheduled
            self._lose(reason)  # a late reply must never answer a later request: never reuse it
        else:
            client.close()
        return reason


def _timed_out(readings: dict[PointName, Reading]) -> bool:
    return any(r.reason == "timeout" for r in readings.values())
