"""ModbusLink against a real pymodbus server: late replies, timeouts, backoff, writes, logs."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator

import pytest

from agent.errors import DeviceLinkError
from agent.link import MemoryLink
from agent.modbus import ModbusLink
from transport.backoff import Backoff, Retrier
from agent.registers import plan_reads
from contracts.schema import DataType, Direction, Point, Table
from tests.agent.modbus_server import BankContext, bank_server
from tests.waiting import eventually, free_port

MBAP_HEADER = 6
"""Transaction id (2), protocol id (2), length (2); the length counts the unit id and the PDU
(Modbus Messaging on TCP/IP Implementation Guide v1.0b, 3.1.3)."""


def pt(name: str, table: Table, address: int, type: DataType = DataType.UINT16,
       direction: Direction = Direction.READ) -> Point:
    return Point(name=name, unit_id=1, table=table, address=address, type=type, direction=direction)


VALUE = pt("value", Table.HOLDING, 0)
LEVEL = pt("level", Table.INPUT, 0)
SPEED = pt("speed", Table.HOLDING, 1, direction=Direction.WRITE)


def device() -> MemoryLink:
    return MemoryLink({(1, Table.HOLDING): {0: 111, 1: 0, 2: 0, 3: 0}, (1, Table.INPUT): {0: 7},
                       (1, Table.COIL): {i: False for i in range(8)}})


class Gateway:
    """A TCP gateway in front of the server that, like many TCP-to-RTU bridges, forwards one
    request at a time per connection and answers with transaction id 0. Against such a gateway
    the client cannot tell a late reply from a fresh one: only a new connection protects it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)  # type: ignore[arg-type]
        writers = [writer]
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            writers.append(up_writer)
            while True:
                up_writer.write(await _frame(reader))
                await up_writer.drain()
                reply = await _frame(up_reader)
                writer.write(b"\x00\x00" + reply[2:])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.tasks.discard(task)  # type: ignore[arg-type]
            for w in writers:
                w.close()
                with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                    await w.wait_closed()


async def _frame(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(MBAP_HEADER)
    return header + await reader.readexactly(int.from_bytes(header[4:6], "big"))


@contextlib.asynccontextmanager
async def gateway(upstream_port: int) -> AsyncIterator[Gateway]:
    gw = Gateway(upstream_port)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@contextlib.asynccontextmanager
async def served(bank: MemoryLink) -> AsyncIterator[tuple[BankContext, int]]:
    async with bank_server(bank) as (_, context, port):
        yield context, port


def events(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Event names logged by the link (the fixture is set to INFO by the tests that use it)."""
    return [getattr(r, "event", "") for r in caplog.records if r.name == "fieldpact.agent.modbus"]


# ---------------------------------------------------------------------------------------------

async def test_a_late_reply_is_never_taken_as_the_answer_to_the_next_request(
        caplog: pytest.LogCaptureFixture) -> None:
    bank = device()
    async with served(bank) as (context, port), gateway(port) as gw:
        link = ModbusLink("127.0.0.1", gw.port, timeout_s=0.2, backoff=Backoff(initial_s=0.001))
        await link.connect()
        context.delay_s = 0.3  # the reply with 111 lands after the client gave up, while a reused
        # socket would be waiting for the answer to the next request
        first = await link.read(plan_reads([VALUE]), now_ms=1)
        assert first["value"].reason == "timeout"
        context.delay_s, bank.banks[(1, Table.HOLDING)][0] = 0.0, 222
        second = await link.read(plan_reads([VALUE]), now_ms=2)
        await link.close()
    assert second["value"].value == 222 and second["value"].good
    assert link.connects == 2  # the timed-out socket was replaced, not reused
    timeouts = [r for r in caplog.records if getattr(r, "event", "") == "modbus_timeout"]
    assert [(r.unit, r.table, r.start) for r in timeouts] == [(1, "holding", 0)]  # type: ignore[attr-defined]


async def test_a_timeout_fails_only_its_own_request_and_the_plan_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    async def stall_holding(unit: int, fc: int, address: int) -> None:
        if fc == 3:
            await asyncio.sleep(0.4)

    caplog.set_level(logging.INFO, logger="fieldpact.agent.modbus")
    async with served(device()) as (context, port):
        context.hook = stall_holding
        link = ModbusLink("127.0.0.1", port, timeout_s=0.15)
        await link.connect()
        readings = await link.read(plan_reads([VALUE, LEVEL]), now_ms=5)
        await link.close()
    assert readings["value"].reason == "timeout"
    assert readings["level"].good and readings["level"].value == 7
    assert "modbus_disconnected" in events(caplog) and events(caplog).count("modbus_connected") == 2


async def test_an_exception_response_keeps_the_connection() -> None:
    async with served(device()) as (_, port):
        link = ModbusLink("127.0.0.1", port)
        await link.connect()
        readings = await link.read(plan_reads([pt("nope", Table.INPUT, 50), LEVEL]), now_ms=1)
        assert link.connected and link.connects == 1
        await link.close()
    assert readings["nope"].reason == "exception:2" and readings["level"].good


async def test_device_exceptions_are_told_in_words_once_and_on_writes(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fieldpact.agent.modbus")
    async with served(device()) as (_, port):
        link = ModbusLink("127.0.0.1", port)
        await link.connect()
        for now in (1, 2, 3):  # three cycles, one log line: the exception's start
            await link.read(plan_reads([pt("nope", Table.HOLDING, 63 + 1000)]), now_ms=now)
        with pytest.raises(DeviceLinkError) as err:
            await link.write(pt("pump", Table.HOLDING, 1063, direction=Direction.WRITE), 5)
        await link.close()
    said = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "modbus_exception"]
    assert said == ["modbus_exception endpoint=modbus unit=1 "
                    "exception 2 (illegal data address) at holding 1063"]
    assert err.value.reason == "exception:2"
    assert "exception 2 (illegal data address) at holding 1063" in str(err.value)


async def test_while_disconnected_reads_return_at_once_and_connects_follow_the_backoff() -> None:
    now = [100.0]
    link = ModbusLink("127.0.0.1", free_port(), timeout_s=0.5, clock=lambda: now[0],
                      backoff=Backoff(initial_s=1.0, factor=2.0, jitter=0.0))
    with pytest.raises(DeviceLinkError):
        await link.connect()
    started = time.monotonic()
    for _ in range(20):  # twenty scan periods inside the first backoff delay: no new attempt
        readings = await link.read(plan_reads([VALUE]), now_ms=1)
        assert readings["value"].reason == "disconnected"
    assert time.monotonic() - started < 0.5 and link.attempts == 1
    attempts = []
    for _ in range(4):
        now[0] += 1.0
        await link.read(plan_reads([VALUE]), now_ms=1)
        attempts.append(link.attempts)
    assert attempts == [2, 2, 3, 3]  # waits of 1 s, then 2 s, then 4 s


async def test_the_link_reconnects_when_the_device_comes_back() -> None:
    async with served(device()) as (_, port):
        gw = Gateway(port)
        await gw.start()
        link = ModbusLink("127.0.0.1", gw.port, timeout_s=0.2, backoff=Backoff(initial_s=0.01))
        await link.connect()
        await gw.stop()  # cable pulled
        lost = await link.read(plan_reads([LEVEL]), now_ms=1)
        await gw.start(gw.port)
        async def reads_again() -> bool:
            return (await link.read(plan_reads([LEVEL]), now_ms=2))["level"].good
        try:  # a read every 10 ms stands for the scan; the backoff decides the attempts
            await eventually(reads_again, 5, "a good read after the device came back", every_s=0.01)
        finally:
            await link.close()
            await gw.stop()
    assert lost["level"].quality.value == "bad" and lost["level"].reason in ("disconnected", "timeout")


async def test_a_write_that_times_out_raises_and_is_never_retried() -> None:
    release = asyncio.Event()

    async def stuck_on_write(unit: int, fc: int, address: int) -> None:
        if fc == 6:
            await release.wait()

    async with served(device()) as (context, port):
        context.hook = stuck_on_write
        link = ModbusLink("127.0.0.1", port, timeout_s=0.15)
        await link.connect()
        try:
            with pytest.raises(DeviceLinkError) as err:
                await link.write(SPEED, 42)
            assert err.value.reason == "timeout"
            assert [r for r in context.requests if r[1] == 6] == [(1, 6, 1, 1)]
            assert not link.connected  # the socket that may still carry the reply is gone
        finally:
            release.set()
            await link.close()


async def test_writes_use_fc5_for_coils_fc6_for_one_register_fc16_for_several() -> None:
    async with served(device()) as (context, port):
        link = ModbusLink("127.0.0.1", port)
        await link.connect()
        await link.write(pt("valve", Table.COIL, 3, DataType.BOOL, Direction.WRITE), True)
        await link.write(SPEED, 9)
        await link.write(pt("sp", Table.HOLDING, 2, DataType.UINT32, Direction.WRITE), 70000)
        await link.close()
    writes = [fc for _, fc, _, _ in context.requests if fc in (5, 6, 15, 16)]
    assert list(dict.fromkeys(writes)) == [5, 6, 16]  # the server touches its store twice per write


def test_backoff_grows_exponentially_caps_and_jitters_within_bounds() -> None:
    b = Retrier(Backoff(initial_s=0.1, max_s=1.0, factor=2.0, jitter=0.2), random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    assert all(0.8 * base <= d <= base for d, base in zip(delays, bases, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, so a fleet does not reconnect in lockstep
    b.reset()
    assert b.next_delay() <= 0.12
