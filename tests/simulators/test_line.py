"""`fieldpact sim line`: several devices on one RTU line in their own process, each answering its
own unit id — here as RTU frames over TCP (the serial side is tests/agent/test_rtu.py's)."""
from __future__ import annotations

import pytest

from agent.endpoint_config import Endpoint, EndpointKind
from agent.modbus import ModbusLink
from agent.registers import plan_reads
from simulators.line import SimLine
from simulators.process import LineProcess
from simulators.server import SimDevice
from tests.agent.endpoint_points import level, pump_speed


async def test_a_line_process_answers_each_unit_id_with_its_own_device() -> None:
    with LineProcess([("tank", 3), ("pump_skid", 7)], tick_ms=50) as line:
        link = ModbusLink.for_endpoint(Endpoint(name="gw", kind=EndpointKind.RTU_OVER_TCP,
                                                host="127.0.0.1", port=line.port, timeout_s=1.0))
        await link.connect()
        try:
            tank = await link.read(plan_reads([level("l3", "gw", 3)]), 0)
            other = await link.read(plan_reads([level("l9", "gw", 9)]), 0)  # no device 9
        finally:
            await link.close()
    assert tank["l3"].good and tank["l3"].value == pytest.approx(1.0, abs=0.5)
    assert other["l9"].reason in ("timeout", "disconnected", "exception:4")


async def test_a_line_refuses_two_devices_on_one_unit_id() -> None:
    with pytest.raises(ValueError, match="distinct unit ids"):
        SimLine([SimDevice("tank", unit_id=1), SimDevice("tank", unit_id=1)], port=0)


async def test_a_write_reaches_only_the_addressed_unit() -> None:
    async with SimLine([SimDevice("tank", unit_id=1), SimDevice("tank", unit_id=2)], port=0) as line:
        link = ModbusLink.for_endpoint(Endpoint(name="gw", kind=EndpointKind.RTU_OVER_TCP,
                                                host="127.0.0.1", port=line.port, timeout_s=1.0))
        await link.connect()
        await link.write(pump_speed("p2", "gw", 2), 420.0)
        await link.close()
        assert line.device(2).values()["pump_speed"] == pytest.approx(420.0)
        assert line.device(1).values()["pump_speed"] == 0
