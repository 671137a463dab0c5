"""The `hang` fault (a hung PLC: connection open, nothing answered) and the simulator as its own
process, frozen with SIGSTOP and thawed with SIGCONT."""
from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from simulators.cli import main as sim_main
from simulators.faults import CONTROL_BASE, Control, Fault
from simulators.process import SimProcess
from simulators.server import SimDevice
from tests.simulators.modbus_client import DEADLINE_S, connect, f32
from tests.waiting import eventually


@pytest.fixture
async def tank() -> AsyncIterator[SimDevice]:
    async with SimDevice("tank", tick_ms=10, initial={"level": 3.0}) as device:
        yield device


async def _answers(client: AsyncModbusTcpClient) -> bool:
    try:
        return not (await client.read_input_registers(0, count=2)).isError()
    except ModbusException:
        return False


async def test_hang_keeps_the_connection_open_and_swallows_requests_until_disabled(
        tank: SimDevice) -> None:
    client = await connect(tank.port, timeout=0.2)
    tank.faults.enable(Fault.HANG)
    assert not await _answers(client)
    with pytest.raises(ModbusException):
        await client.write_coil(13, True)
    server = tank._server
    assert server is not None and server.active_connections  # still open: a hang, not a drop
    newcomer = await connect(tank.port, timeout=0.2)  # and a new connection is still accepted
    assert not await _answers(newcomer)
    tank.faults.disable(Fault.HANG)
    after = await connect(tank.port)
    assert await _answers(after)
    assert tank.values()["valve_open"] is False  # the write sent during the hang was never applied
    for c in (client, newcomer, after):
        c.close()


async def test_hang_set_over_modbus_with_a_duration_clears_itself(tank: SimDevice) -> None:
    client = await connect(tank.port)
    await client.write_register(CONTROL_BASE + Control.HANG_FOR_MS, 300)
    answer = await client.write_register(CONTROL_BASE, int(Fault.HANG))
    assert not answer.isError() and tank.faults.active == Fault.HANG
    client.close()

    async def cleared() -> bool:
        return tank.faults.active == Fault(0)
    await eventually(cleared, DEADLINE_S, "the faults cleared")
    after = await connect(tank.port)
    assert await _answers(after)
    after.close()


async def test_cli_enables_hang_for_a_duration(tank: SimDevice) -> None:
    code = await asyncio.to_thread(sim_main, ["sim", "fault", "--port", str(tank.port),
                                              "--enable", "hang", "--hang-for-ms", "300"])
    assert code == 0 and tank.faults.settings.hang_for_ms == 300

    async def cleared() -> bool:
        return tank.faults.active == Fault(0)
    await eventually(cleared, DEADLINE_S, "the faults cleared")


@pytest.mark.skipif(sys.platform != "linux", reason="SIGSTOP/SIGCONT semantics")
async def test_a_sigstopped_simulator_queues_requests_and_answers_on_sigcont() -> None:
    with SimProcess("tank", tick_ms=20, initial={"level": 2.5}) as sim:
        client = await connect(sim.port, timeout=0.3)
        assert f32((await client.read_input_registers(0, count=2)).registers) == pytest.approx(2.5, abs=0.05)
        sim.pause()
        assert not await _answers(client)  # stopped: nothing answers
        client.close()
        patient = await connect(sim.port, timeout=10.0)  # the kernel still accepts the connection
        pending = asyncio.create_task(patient.read_input_registers(0, count=2))
        await asyncio.sleep(0.2)  # the request is queued in the stopped process's socket
        assert not pending.done()
        sim.resume()
        async with asyncio.timeout(10):
            answered = await pending
        assert not answered.isError()
        patient.close()
