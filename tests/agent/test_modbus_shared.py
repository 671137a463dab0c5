"""One link, several callers at once: the scan loop and a commissioning poll (or two contracts'
work) ask the same connection concurrently. A Modbus connection carries one request at a time
(agent/modbus_wire.py), so the link queues them: every caller gets its own answer, and nobody's
request is failed as a "timeout" that drops the connection. Real pymodbus server on loopback.

Before the fix, the second caller's request raised "a request is already in flight", which the
link took for a timeout: it dropped the connection under the first caller too (seen in CI as a
commissioning report failing a point the device answered: tests/hub/test_commissioning_e2e.py).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from agent.commission_run import poll
from agent.endpoints import EndpointSet
from agent.modbus import ModbusLink
from agent.registers import plan_reads
from contracts.schema import Point
from tests.agent.modbus_server import BankContext
from tests.agent.test_modbus import LEVEL, SPEED, VALUE, device, served

SLOW_S = 0.02
"""Each request takes this long on the server: long enough that concurrent callers overlap."""


def _timeouts(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", "") == "modbus_timeout"]


async def _slow(unit: int, fc: int, address: int) -> None:
    await asyncio.sleep(SLOW_S)


async def test_concurrent_reads_and_a_write_on_one_link_each_get_their_answer(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fieldpact.agent.modbus")
    async with served(device()) as (context, port):
        context.hook = _slow
        link = ModbusLink("127.0.0.1", port, timeout_s=1.0)
        await link.connect()
        try:
            results = await asyncio.gather(
                link.read(plan_reads([VALUE]), now_ms=1), link.read(plan_reads([LEVEL]), now_ms=1),
                link.write(SPEED, 42), link.read(plan_reads([VALUE, LEVEL]), now_ms=1))
        finally:
            await link.close()
    first, second, _, both = results
    assert first["value"].good and first["value"].value == 111
    assert second["level"].good and second["level"].value == 7
    assert both["value"].good and both["level"].good
    assert link.connects == 1 and not _timeouts(caplog)  # nobody's request dropped the socket
    assert (1, 6, 1, 1) in context.requests


async def test_a_commissioning_poll_beside_the_scan_on_several_endpoints_reads_for_real(
        caplog: pytest.LogCaptureFixture) -> None:
    """Two endpoints: the poll reads each point on its endpoint's link, queued behind the scan's
    request in flight, never answered with the scan's held values nor a made-up "timeout"."""
    caplog.set_level(logging.WARNING, logger="fieldpact.agent.modbus")
    async with served(device()) as (ca, port_a), served(device()) as (cb, port_b):
        ca.hook = cb.hook = _slow
        links = EndpointSet({"a": ModbusLink("127.0.0.1", port_a, timeout_s=1.0),
                             "b": ModbusLink("127.0.0.1", port_b, timeout_s=1.0)})
        await links.connect()
        plan = plan_reads([replace(VALUE, endpoint="a"), replace(LEVEL, endpoint="b")])
        contract = _contract(replace(VALUE, endpoint="a"), replace(LEVEL, endpoint="b"))
        stop = asyncio.Event()

        async def scan() -> int:
            cycles = 0
            while not stop.is_set():
                links.pace(asyncio.get_running_loop().time() + 0.05)
                await links.read(plan, now_ms=cycles)
                cycles += 1
            return cycles

        scanning = asyncio.ensure_future(scan())
        try:
            samples = await poll(contract, links, seconds=0.3, interval_s=0.05)
        finally:
            stop.set()
            cycles = await scanning
            await links.close()
    assert cycles > 3
    assert samples and all(s.words is not None for s in samples), [
        (s.point, s.error) for s in samples if s.words is None][:3]
    assert not _timeouts(caplog)
    assert len({s.point for s in samples}) == 2
    assert _served_by(ca, 3) and _served_by(cb, 4)  # the poll's own reads reached each device


def _served_by(context: BankContext, fc: int) -> bool:
    return any(r[1] == fc for r in context.requests)


def _contract(*points: Point) -> Any:
    """What poll() reads of a contract: its points."""
    return SimpleNamespace(points=points)
