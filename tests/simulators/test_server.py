"""SimDevice on a real pymodbus server, read and written by a real pymodbus client on 127.0.0.1."""
from __future__ import annotations

import argparse
import asyncio
import signal
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from contracts.schema import Table
from simulators import cli
from simulators.fleet import SimFleet
from simulators.server import SimDevice, SimulatorError
from tests.simulators.modbus_client import DEADLINE_S, connect, f32
from tests.waiting import eventually, listening

ROOT = Path(__file__).parents[2]


@pytest.fixture
async def tank() -> AsyncIterator[SimDevice]:
    async with SimDevice("tank", tick_ms=10, initial={"level": 1.0}) as device:
        yield device


async def test_address_n_in_the_map_is_address_n_on_the_wire(tank: SimDevice,
                                                              client: AsyncModbusTcpClient) -> None:
    tank.set("level", 5.75)
    assert (await client.read_input_registers(0, count=1)).registers == [0x40B8]
    assert (await client.read_input_registers(1, count=1)).registers == [0x0000]
    assert (await client.read_discrete_inputs(0, count=2)).bits[:2] == [True, False]
    await client.write_coil(13, True)
    assert tank.values()["valve_open"] is True
    assert (await client.read_coils(12, count=3)).bits[:3] == [False, True, False]
    await client.write_register(20, 12000)
    assert tank.values()["pump_speed"] == 1200.0
    assert (await client.read_holding_registers(19, count=3)).registers == [0, 12000, 12000]


async def test_unmapped_address_answers_illegal_data_address(client: AsyncModbusTcpClient) -> None:
    response = await client.read_holding_registers(100, count=1)
    assert response.isError() and response.exception_code == 2


async def test_tank_level_rises_with_valve_open_and_pump_running(tank: SimDevice,
                                                                 client: AsyncModbusTcpClient) -> None:
    start = f32((await client.read_input_registers(0, count=2)).registers)
    await client.write_coil(13, True)
    await client.write_register(20, 15000)

    async def risen() -> bool:
        return f32((await client.read_input_registers(0, count=2)).registers) > start + 0.01
    await eventually(risen, DEADLINE_S, "the level rising")


async def test_tank_level_drains_with_the_valve_closed() -> None:
    async with SimDevice("tank", tick_ms=10, initial={"level": 3.0}, time_scale=20.0) as tank:
        client = await connect(tank.port)
        await client.write_register(20, 15000)  # pump running, valve closed: still drains

        async def drained() -> bool:
            return f32((await client.read_input_registers(0, count=2)).registers) < 2.99
        await eventually(drained, DEADLINE_S, "the level draining")
        client.close()


async def test_pump_skid_map_matches_its_contract_on_the_wire() -> None:
    async with SimDevice("pump_skid", tick_ms=10, time_scale=20.0) as skid:
        client = await connect(skid.port)
        await client.write_register(0, 3000)
        await client.write_coil(0, True)

        async def running() -> bool:
            return bool((await client.read_discrete_inputs(0, count=1)).bits[0])
        await eventually(running, DEADLINE_S, "the skid running")
        skid.faults.enable(cli.Fault.FROZEN)  # hold the values still while we compare
        truth = skid.values()
        words = (await client.read_input_registers(0, count=4)).registers
        assert f32(words[:2]) == pytest.approx(truth["discharge_pressure"])
        assert struct.unpack(">h", struct.pack(">H", words[2]))[0] == round(truth["motor_current"] * 10)
        assert words[3] == round(truth["flow"] * 10)
        assert (await client.read_holding_registers(0, count=1)).registers == [3000]
        client.close()


async def test_write_log_records_each_client_write_but_not_fault_control(
        tank: SimDevice, client: AsyncModbusTcpClient) -> None:
    await client.write_coil(13, True)
    await client.write_registers(20, [900])
    await client.write_register(9001, 250)
    assert [(w.table, w.address, w.values) for w in tank.write_log] == [
        (Table.COIL, 13, (True,)), (Table.HOLDING, 20, (900,))]


async def test_nothing_is_left_listening_after_exit() -> None:
    async with SimDevice("tank") as tank:
        client = await connect(tank.port)
        assert listening(tank.port)
    assert not listening(tank.port)
    client.close()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("sim-")]


async def test_a_taken_port_is_reported_as_simulator_error(tank: SimDevice) -> None:
    with pytest.raises(SimulatorError, match=str(tank.port)):
        async with SimDevice("tank", port=tank.port):
            pass


async def test_fleet_serves_each_device_on_its_own_port() -> None:
    specs = [("tank-1", "tank"), ("tank-2", "tank"), ("skid-1", "pump_skid")]
    async with SimFleet(specs, tick_ms=10) as fleet:
        assert len(set(fleet.ports.values())) == 3
        fleet.device("tank-2").set("level", 4.5)
        client = await connect(fleet.ports["tank-2"])
        assert f32((await client.read_input_registers(0, count=2)).registers) == pytest.approx(4.5, abs=0.01)
        client.close()
        ports = list(fleet.ports.values())
    assert not any(listening(p) for p in ports)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fieldpact")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parses_sim_device_with_faults() -> None:
    args = _parser().parse_args(["sim", "device", "--model", "pump_skid", "--port", "1502",
                                 "--fault", "frozen", "--fault", "noise"])
    assert (args.model, args.port, args.host, args.unit, args.tick_ms) == (
        "pump_skid", 1502, "127.0.0.1", 1, 100)
    assert args.fault == [cli.Fault.FROZEN, cli.Fault.NOISE] and callable(args.func)


def test_cli_refuses_an_unknown_model() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["sim", "device", "--model", "boiler"])


async def test_cli_fault_command_flips_faults_in_a_running_device(tank: SimDevice) -> None:
    args = _parser().parse_args(["sim", "fault", "--port", str(tank.port), "--enable", "frozen",
                                 "--enable", "latency", "--latency-ms", "50"])
    assert await cli.flip_faults(args) == 0
    assert tank.faults.active == cli.Fault.FROZEN | cli.Fault.LATENCY
    assert tank.faults.settings.latency_ms == 50
    args = _parser().parse_args(["sim", "fault", "--port", str(tank.port), "--disable", "latency"])
    assert await cli.flip_faults(args) == 0
    assert tank.faults.active == cli.Fault.FROZEN


async def test_sim_device_process_prints_its_port_and_stops_cleanly_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.cli", "sim", "device", "--model", "tank", "--port", "0",
        stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    try:
        async with asyncio.timeout(DEADLINE_S):
            line = (await process.stdout.readline()).decode()  # type: ignore[union-attr]
        assert line.startswith("listening host=127.0.0.1 port=") and line.endswith(" model=tank\n")
        port = int(line.split("port=")[1].split()[0])
        client = await connect(port)
        assert not (await client.read_input_registers(0, count=2)).isError()
        client.close()
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE_S):
            assert await process.wait() == 0
        assert not listening(port)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
