"""WireClient: the Modbus master the agent's links use — one connection, one request at a time.

Why not pymodbus's client (issue 11, bench/endpoints.py at 100 Hz): its request path (client mixin,
TransactionManager with its lock, wait_for and retry loop, framer search, trace and log hooks,
the serial transport's add_writer per frame) cost 70-110 us of CPU per Modbus TCP request and
250-440 us per RTU request on the lab host (bench/README.md, issue 11 CPU lane), about 2 ms of
the agent's 2.9 ms per cycle. This client does only what the links need: FC1-FC6 and FC16, one
request in flight, the answer checked against the request. pymodbus still provides the serial
transport (pyserial under asyncio: SerialTransport, which `_SerialNow` makes write a frame at once
rather than on the next loop turn), the RTU CRC and the exceptions the links catch; its servers are
what the simulators and tests run.

Rules (Modbus Application Protocol v1.1b3; Modbus over Serial Line v1.02; Messaging on TCP/IP v1.0b):
- TCP: MBAP header (transaction id, protocol 0, length, unit id) then the PDU. RTU (serial, or
  RTU frames over TCP for a gateway): unit id, PDU, CRC-16 little end first.
- An answer must match the request: same transaction id (TCP; 0 is taken too, as pymodbus
  takes it: many TCP-to-RTU gateways answer every request with 0, and against those only a new
  connection after a timeout protects us), unit id (any, for a request to unit 0, as pymodbus)
  and function code (or that code + 0x80: an
  exception answer with its code). Anything else — another transaction id,
  a bad CRC, a length that does not fit — raises ModbusIOException: the link closes the
  connection (a late reply must never answer a later request: DESIGN pitfall).
- No reply within `timeout_s` raises TimeoutError; a connection closed under a request raises
  ConnectionException. Nothing is retried here: agent/modbus.py owns retries and reconnects.
"""
from __future__ import annotations

import asyncio
import os
import struct

from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer.rtu import FramerRTU
from pymodbus.transport.serialtransport import SerialTransport
from serial import SerialException

from agent.endpoint_config import Endpoint

READ_FCS = frozenset({1, 2, 3, 4})
"""Read coils, discrete inputs, holding registers, input registers: answered with a byte count."""
ECHO_FCS = frozenset({5, 6, 15, 16})
"""Writes: answered with 4 bytes (address and value or count)."""
MBAP = struct.Struct(">HHHB")
"""Transaction id, protocol id (0), length of what follows, unit id (Messaging on TCP/IP 3.1.3)."""
TIMER_SLACK_S = 0.001
"""asyncio runs a timer up to its clock resolution early: a deadline this close counts as passed."""
MAX_ADU = 260
"""The largest Modbus TCP ADU (Messaging on TCP/IP 4.1): a length field past it is garbage."""


class Answer:
    """A device's answer: `registers` (FC3/4), `bits` (FC1/2, rounded up to whole bytes, as the
    device sends them), or `exception_code` when `isError()` (the name pymodbus's PDUs use)."""

    __slots__ = ("function_code", "exception_code", "registers", "bits")

    def __init__(self, function_code: int, data: bytes) -> None:
        self.function_code = function_code
        self.exception_code = data[0] if function_code & 0x80 else 0
        self.registers: list[int] = []
        self.bits: list[bool] = []
        if function_code in (3, 4):
            self.registers = list(struct.unpack(f">{(len(data) - 1) // 2}H", data[1:]))
        elif function_code in (1, 2):
            self.bits = [bool(byte >> i & 1) for byte in data[1:] for i in range(8)]

    def isError(self) -> bool:  # noqa: N802  (pymodbus's name: agent/modbus.py reads either)
        return self.exception_code != 0


class _Wire(asyncio.Protocol):
    """Bytes in, the pending request's answer out; see the module docstring."""

    def __init__(self, rtu: bool) -> None:
        self.rtu = rtu
        self.transport: asyncio.BaseTransport | None = None
        self.buffer = b""
        self.pending: asyncio.Future[Answer] | None = None
        self.expect = (0, 0, 0)  # transaction id (TCP), unit id, function code

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(ConnectionException(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.pending is None or self.pending.done():
            self.buffer = b""  # nothing asked: a late reply, dropped (the link reconnects anyway)
            return
        try:
            answer = self._rtu() if self.rtu else self._tcp()
        except ModbusIOException as exc:
            self._fail(exc)
            return
        if answer is not None:
            self.buffer = b""
            self.pending.set_result(answer)

    def _tcp(self) -> Answer | None:
        if len(self.buffer) < MBAP.size + 1:
            return None
        tid, protocol, length, unit = MBAP.unpack_from(self.buffer)
        if protocol != 0 or not 2 <= length <= MAX_ADU:
            raise ModbusIOException(f"bad MBAP header (protocol {protocol}, length {length})")
        if len(self.buffer) < 6 + length:
            return None
        return self._check(tid, unit, self.buffer[7], self.buffer[8:6 + length])

    def _rtu(self) -> Answer | None:
        buf = self.buffer
        if len(buf) < 5:
            return None
        fc = buf[1]
        size = 5 if fc & 0x80 else 3 + buf[2] + 2 if fc in READ_FCS else 8
        if len(buf) < size:
            return None
        crc = FramerRTU.compute_CRC(buf[:size - 2])
        if crc != buf[size - 2] << 8 | buf[size - 1]:
            raise ModbusIOException(f"bad CRC on a {size}-byte RTU frame")
        return self._check(self.expect[0], buf[0], fc, buf[2:size - 2])

    def _check(self, tid: int, unit: int, fc: int, data: bytes) -> Answer:
        want_tid, want_unit, want_fc = self.expect
        if tid not in (want_tid, 0) or unit not in (want_unit, 0) and want_unit or fc & 0x7F != want_fc:
            raise ModbusIOException(
                f"answer (transaction {tid}, unit {unit}, function {fc}) does not match the "
                f"request (transaction {want_tid}, unit {want_unit}, function {want_fc})")
        if fc in READ_FCS and (not data or data[0] != len(data) - 1):
            raise ModbusIOException(f"function {fc}: byte count does not match the answer")
        if fc & 0x80 and len(data) != 1:
            raise ModbusIOException(f"function {fc}: exception answer of {len(data)} bytes")
        return Answer(fc, data)

    def _fail(self, exc: Exception) -> None:
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(exc)


class _SerialNow(SerialTransport):
    """pymodbus's serial transport, reading what the port holds in one call and writing each
    frame when asked: its own write() waits for the
    loop to report the port writable (an add_writer, a loop turn, a remove_writer per frame), which
    a pty or a UART with an empty output buffer always is. A partial write still falls back to
    the writer callback (intern_write_ready), which also reports a SerialException by closing."""

    def intern_read_ready(self) -> None:
        """What the port holds, read at once (the port is non-blocking: pyserial opens it
        O_NONBLOCK), without pyserial's read loop (a select, a Timeout, a loop per call:
        ~50 us of the ~230 us of an RTU request on the lab host). Nothing to read from a port
        the loop saw readable means it is gone: closed as pyserial's read would report it."""
        try:
            data = os.read(self.sync_serial.fd, 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(exc=SerialException(f"read failed: {exc}"))
            return
        if not data:
            self.close(exc=SerialException("device reports readiness to read but returned no data"))
            return
        self.intern_protocol.data_received(data)  # type: ignore[attr-defined]

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.intern_write_buffer:  # the usual case: nothing queued, the port takes it all
            try:
                data = data[self.sync_serial.write(data) or 0:]
            except (BlockingIOError, InterruptedError):
                pass
            except SerialException as exc:  # as intern_write_ready: the request fails at once
                self.close(exc=exc)
                return
            if not data:
                return
        self.intern_write_buffer.append(bytes(data))
        self.intern_write_ready()


class WireClient:
    """A Modbus master on `endpoint` (TCP, RTU over serial, RTU over TCP); `timeout_s` bounds the
    connect and each request (the writes keep pymodbus's method names).

    The reply timeout is one lazy timer per client, not one per request: a request moves the
    deadline; the timer, when it fires, fails the request in flight if its deadline has passed,
    else is set again for it (so at most one timer wake-up per timeout_s, however many
    requests: 11 requests per 10 ms cycle made and cancelled a timer each in bench.endpoints)."""

    def __init__(self, endpoint: Endpoint, timeout_s: float) -> None:
        self.endpoint, self.timeout_s = endpoint, timeout_s
        self._wire = _Wire(rtu=endpoint.kind.serial or endpoint.kind.rtu_framing)
        self._transport: asyncio.BaseTransport | None = None
        self._tid = 0
        self._deadline = 0.0  # the loop time by which the request in flight must be answered
        self._timer: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._wire.transport is not None

    async def connect(self) -> bool:
        """Open the connection; False when it cannot be opened within timeout_s."""
        loop, ep = asyncio.get_running_loop(), self.endpoint
        try:
            async with asyncio.timeout(self.timeout_s):
                if ep.kind.serial:  # opening the port is synchronous (pyserial); it is ours at once
                    serial = _SerialNow(loop, self._wire, ep.device, ep.baud, 8, ep.parity,
                                        ep.stop_bits, self.timeout_s)
                    self._transport = serial
                    loop.call_soon(serial.setup)  # as pymodbus's create_serial_connection
                    while self._wire.transport is None:  # connection_made comes by call_soon
                        await asyncio.sleep(0)
                else:
                    self._transport, _ = await loop.create_connection(lambda: self._wire,
                                                                      ep.host, ep.port)
        except (TimeoutError, OSError, ValueError):  # pyserial's SerialException is an OSError
            self.close()  # a port left open would refuse the next attempt (opened exclusive)
            return False
        except asyncio.CancelledError:
            self.close()
            raise
        return True

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self._wire._fail(ConnectionException("closed"))

    async def read(self, fc: int, start: int, count: int, unit: int) -> Answer:
        """FC1-FC4 (`fc`): `count` addresses from `start` of unit `unit`."""
        return await self._ask(unit, fc, struct.pack(">HH", start, count))

    async def write_coil(self, address: int, value: bool, *, device_id: int) -> Answer:
        return await self._ask(device_id, 5, struct.pack(">HH", address, 0xFF00 if value else 0))

    async def write_register(self, address: int, value: int, *, device_id: int) -> Answer:
        return await self._ask(device_id, 6, struct.pack(">HH", address, value))

    async def write_registers(self, address: int, values: list[int], *, device_id: int) -> Answer:
        body = struct.pack(f">HHB{len(values)}H", address, len(values), 2 * len(values), *values)
        return await self._ask(device_id, 16, body)

    async def _ask(self, unit: int, fc: int, body: bytes) -> Answer:
        """Send one request and wait for its answer. Raises ConnectionException, TimeoutError,
        ModbusIOException (module docstring)."""
        wire, transport = self._wire, self._transport
        if transport is None or wire.transport is None:
            raise ConnectionException(f"not connected to {self.endpoint.label}")
        if wire.pending is not None and not wire.pending.done():
            raise ModbusIOException("a request is already in flight on this connection")
        loop = asyncio.get_running_loop()
        pdu = bytes((fc,)) + body
        if wire.rtu:
            frame = bytes((unit,)) + pdu
            frame += FramerRTU.compute_CRC(frame).to_bytes(2, "big")
            tid = 0
        else:
            self._tid = tid = self._tid % 0xFFFF + 1
            frame = MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu
        wire.buffer, wire.expect = b"", (tid, unit, fc)
        future: asyncio.Future[Answer] = loop.create_future()
        wire.pending = future
        transport.write(frame)  # type: ignore[attr-defined]
        self._deadline = loop.time() + self.timeout_s
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._on_timer, loop)
        return await future

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        future = self._wire.pending
        if future is None or future.done():
            return  # nothing in flight: the next request sets the timer again
        if loop.time() + TIMER_SLACK_S >= self._deadline:
            future.set_exception(TimeoutError("no answer within the endpoint's timeout"))
        else:
            self._timer = loop.call_at(self._deadline, self._on_timer, loop)
