"""Modbus RTU endpoints against real simulated lines: RTU on a serial device (a pseudo-terminal
pair: socat's when it is on PATH, and always the one simulators/ptypair.py makes itself) with two
unit ids on one line, and RTU frames over TCP (a serial gateway). Real pymodbus on both sides."""
from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from agent.endpoint_config import Endpoint, EndpointKind
from agent.endpoints import EndpointSet
from agent.modbus import ModbusLink
from agent.registers import plan_reads
from simulators.line import SimLine
from simulators.ptypair import PtyPair
from simulators.server import SimDevice
from tests.agent.endpoint_points import high_level, level, pump_speed
from tests.waiting import eventually

PTYS = [pytest.param(False, id="pty-made-by-the-test"),
        pytest.param(True, id="socat", marks=pytest.mark.skipif(
            shutil.which("socat") is None, reason="socat is not on PATH (.ci/run installs it)"))]


def _line_devices() -> list[SimDevice]:
    return [SimDevice("tank", unit_id=1, tick_ms=20, initial={"level": 1.25}),
            SimDevice("tank", unit_id=2, tick_ms=20, initial={"level": 3.5})]


@asynccontextmanager
async def rtu_line(use_socat: bool) -> AsyncIterator[tuple[SimLine, Endpoint]]:
    with PtyPair(use_socat=use_socat) as (line_side, agent_side):
        async with SimLine(_line_devices(), serial=line_side, baud=115200, parity="N") as line:
            yield line, Endpoint(name="line1", kind=EndpointKind.RTU, device=agent_side, baud=115200,
                                 parity="N", timeout_s=0.5)


POINTS = [level("level_1", "line1", 1), level("level_2", "line1", 2),
          high_level("high_2", "line1", 2), pump_speed("pump_2", "line1", 2)]


@pytest.mark.parametrize("use_socat", PTYS)
async def test_rtu_over_a_pty_reads_and_writes_two_unit_ids_on_one_line(use_socat: bool) -> None:
    async with rtu_line(use_socat) as (line, endpoint):
        link = EndpointSet({"line1": ModbusLink.for_endpoint(endpoint)})
        await link.connect()
        try:
            plan = plan_reads(POINTS)
            assert {(r.endpoint, r.unit_id) for r in plan} == {("line1", 1), ("line1", 2)}
            readings = await link.read(plan, 1000)
            assert all(r.good for r in readings.values()), readings
            assert readings["level_1"].value == pytest.approx(1.25, abs=0.05)
            assert readings["level_2"].value == pytest.approx(3.5, abs=0.05)
            await link.write(POINTS[3], 750.0)  # unit 2's pump only
            assert line.device(2).values()["pump_speed"] == pytest.approx(750.0)
            assert line.device(1).values()["pump_speed"] == 0
            back = await link.read(plan, 1050)
            assert back["pump_2"].good and back["pump_2"].value == pytest.approx(750.0)
        finally:
            await link.close()


async def test_an_rtu_line_whose_device_goes_away_marks_its_points_bad_and_comes_back() -> None:
    """The serial device vanishing (the line's server stopped) is a timeout, not a hang of the
    loop; when the line answers again the same link reads GOOD again (the port is reopened)."""
    with PtyPair(use_socat=False) as (line_side, agent_side):
        endpoint = Endpoint(name="line1", kind=EndpointKind.RTU, device=agent_side, baud=115200,
                            parity="N", timeout_s=0.2, retry_initial_s=0.01, retry_max_s=0.05)
        link = ModbusLink.for_endpoint(endpoint)
        plan = plan_reads(POINTS[:2])
        async with SimLine(_line_devices(), serial=line_side, baud=115200, parity="N"):
            await link.connect()
            assert all(r.good for r in (await link.read(plan, 0)).values())
        silent = await link.read(plan, 50)
        assert {r.reason for r in silent.values()} <= {"timeout", "disconnected"}
        async with SimLine(_line_devices(), serial=line_side, baud=115200, parity="N"):
            async def good() -> bool:
                return all(r.good for r in (await link.read(plan, 100)).values())
            await eventually(good, 10, "the line answers again")
        await link.close()


async def test_rtu_frames_over_tcp_reach_each_unit_behind_a_serial_gateway() -> None:
    async with SimLine(_line_devices(), port=0) as gateway:
        endpoint = Endpoint(name="gw", kind=EndpointKind.RTU_OVER_TCP, host="127.0.0.1",
                            port=gateway.port, timeout_s=0.5)
        link = ModbusLink.for_endpoint(endpoint)
        await link.connect()
        try:
            points = [level("l1", "gw", 1), level("l2", "gw", 2), pump_speed("p1", "gw", 1)]
            readings = await link.read(plan_reads(points), 0)
            assert readings["l1"].value == pytest.approx(1.25, abs=0.05)
            assert readings["l2"].value == pytest.approx(3.5, abs=0.05)
            await link.write(points[2], 300.0)
            assert gateway.device(1).values()["pump_speed"] == pytest.approx(300.0)
        finally:
            await link.close()


async def test_plain_modbus_tcp_framing_is_not_understood_by_an_rtu_gateway() -> None:
    """The framing is the endpoint's: a modbus-tcp endpoint pointed at an RTU-over-TCP gateway
    gets no valid answer (BAD), so the kind in agent.toml is what makes the gateway work."""
    async with SimLine(_line_devices(), port=0) as gateway:
        wrong = Endpoint(name="gw", kind=EndpointKind.TCP, host="127.0.0.1", port=gateway.port,
                         timeout_s=0.2)
        link = ModbusLink.for_endpoint(wrong)
        await link.connect()
        try:
            readings = await link.read(plan_reads([level("l1", "gw", 1)]), 0)
            assert not readings["l1"].good
        finally:
            await link.close()
