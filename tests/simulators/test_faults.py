"""Faults: the pure switch and register mapping, then each fault as a Modbus client sees it."""
from __future__ import annotations

import random
import struct
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from simulators.faults import (
    CONTROL_BASE, Fault, FaultSettings, FaultSwitch, from_registers, perturb, to_registers,
)
from simulators.server import SimDevice
from tests.simulators.modbus_client import DEADLINE_S, connect, f32
from tests.waiting import eventually

# -- pure ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, fault", [("frozen", Fault.FROZEN), ("SWAP_WORDS", Fault.SWAP_WORDS),
                                         ("swap-words", Fault.SWAP_WORDS)])
def test_fault_names_parse_in_any_case_and_with_dashes(text: str, fault: Fault) -> None:
    assert Fault.parse(text) is fault


def test_unknown_fault_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="frozen, noise, spike"):
        Fault.parse("melted")


def test_control_registers_round_trip_the_settings() -> None:
    settings = FaultSettings(active=Fault.NOISE | Fault.LATENCY, latency_ms=250, noise_milli=7,
                             exception_code=6, drop_for_ms=1000, hang_for_ms=400)
    assert from_registers(FaultSettings(), 0, to_registers(settings)) == settings
    assert to_registers(settings) == [34, 250, 7, 6, 1000, 400]


def test_a_partial_control_write_changes_only_those_registers() -> None:
    after = from_registers(FaultSettings(active=Fault.FROZEN), 1, [99])
    assert (after.active, after.latency_ms) == (Fault.FROZEN, 99)


@pytest.mark.parametrize("offset, values, reason", [
    (0, [0x100], "unknown fault bits"), (3, [7], "not a Modbus exception code"),
    (5, [1, 2], "outside the block"),
])
def test_bad_control_writes_are_refused(offset: int, values: list[int], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        from_registers(FaultSettings(), offset, values)


def test_no_analog_fault_leaves_the_value_alone() -> None:
    assert perturb(2.0, 6.0, FaultSettings(), random.Random(0)) == 2.0


def test_noise_is_reproducible_from_the_seed_and_scaled_by_the_amplitude() -> None:
    settings = FaultSettings(active=Fault.NOISE, noise_milli=100)
    first = [perturb(2.0, 6.0, settings, random.Random(1)) for _ in range(2)]
    assert first[0] == first[1] != 2.0
    rng = random.Random(2)
    spread = [perturb(0.0, 6.0, settings, rng) for _ in range(2000)]
    assert sum(v * v for v in spread) / len(spread) == pytest.approx(0.01, rel=0.15)


def test_spike_jumps_by_half_the_span() -> None:
    settings = FaultSettings(active=Fault.SPIKE, spike_probability=1.0)
    assert abs(perturb(3.0, 6.0, settings, random.Random(0)) - 3.0) == 3.0


def test_switch_announces_changes_only() -> None:
    switch, seen = FaultSwitch(), []
    switch.subscribe(lambda old, new: seen.append((old.active, new.active)))
    switch.enable(Fault.FROZEN)
    switch.enable(Fault.FROZEN)
    switch.enable(Fault.NOISE)
    switch.disable(Fault.FROZEN)
    switch.clear()
    assert seen == [(Fault(0), Fault.FROZEN), (Fault.FROZEN, Fault.FROZEN | Fault.NOISE),
                    (Fault.FROZEN | Fault.NOISE, Fault.NOISE), (Fault.NOISE, Fault(0))]


# -- on the wire ---------------------------------------------------------------------------------


@pytest.fixture
async def tank() -> AsyncIterator[SimDevice]:
    async with SimDevice("tank", tick_ms=10, initial={"level": 3.0}, time_scale=50.0) as device:
        yield device


async def level(client: AsyncModbusTcpClient) -> float:
    return f32((await client.read_input_registers(0, count=2)).registers)


async def test_frozen_device_keeps_answering_the_same_value_while_the_process_moves(
        tank: SimDevice, client: AsyncModbusTcpClient) -> None:
    tank.faults.enable(Fault.FROZEN)
    frozen = await level(client)

    async def moved() -> bool:
        return tank.values()["level"] < frozen - 0.02
    await eventually(moved, DEADLINE_S, "the level moving again")
    assert await level(client) == frozen
    tank.faults.disable(Fault.FROZEN)
    assert await level(client) == pytest.approx(tank.values()["level"], abs=0.01)


async def test_noise_makes_readings_stray_from_the_true_value(tank: SimDevice,
                                                              client: AsyncModbusTcpClient) -> None:
    assert await level(client) == pytest.approx(tank.values()["level"], abs=0.005)
    tank.faults.configure(noise_milli=200)
    tank.faults.enable(Fault.NOISE)

    async def strays() -> bool:
        return abs(await level(client) - tank.values()["level"]) > 0.05
    await eventually(strays, DEADLINE_S, "the wire value straying from the truth")


async def test_spike_makes_a_reading_jump_by_half_the_span(tank: SimDevice,
                                                           client: AsyncModbusTcpClient) -> None:
    tank.faults.configure(spike_probability=1.0)
    tank.faults.enable(Fault.SPIKE)  # republishes at once, through the spike
    assert abs(await level(client) - tank.values()["level"]) == pytest.approx(3.0, abs=0.01)


@pytest.mark.parametrize("code", [4, 6])
async def test_exception_fault_answers_every_request_with_the_configured_code(
        tank: SimDevice, client: AsyncModbusTcpClient, code: int) -> None:
    tank.faults.configure(exception_code=code)
    tank.faults.enable(Fault.EXCEPTION)
    for response in (await client.read_input_registers(0, count=2), await client.write_coil(13, True)):
        assert response.isError() and response.exception_code == code
    assert tank.values()["valve_open"] is False
    cleared = await client.write_register(CONTROL_BASE, 0)  # control registers stay reachable
    assert not cleared.isError() and tank.faults.active == Fault(0)


async def test_drop_hangs_up_and_refuses_clients_until_disabled(tank: SimDevice) -> None:
    client = await connect(tank.port, timeout=0.2)
    tank.faults.enable(Fault.DROP)
    with pytest.raises(ModbusException):  # the client notices the hang-up only by its timeout
        await level(client)
    client.close()
    newcomer = AsyncModbusTcpClient("127.0.0.1", port=tank.port, timeout=0.2, retries=0)
    await newcomer.connect()
    with pytest.raises(ModbusException):
        await level(newcomer)
    newcomer.close()
    tank.faults.disable(Fault.DROP)
    after = await connect(tank.port)
    assert await level(after) == pytest.approx(tank.values()["level"], abs=0.01)
    after.close()


async def test_drop_set_over_modbus_with_a_duration_clears_itself(
        tank: SimDevice, client: AsyncModbusTcpClient) -> None:
    await client.write_register(CONTROL_BASE + 4, 200)
    answer = await client.write_register(CONTROL_BASE, int(Fault.DROP))
    assert not answer.isError() and tank.faults.active == Fault.DROP

    async def cleared() -> bool:
        return tank.faults.active == Fault(0)
    await eventually(cleared, DEADLINE_S, "the faults cleared")
    after = await connect(tank.port)
    assert not (await after.read_input_registers(0, count=2)).isError()
    after.close()


async def test_latency_makes_a_short_client_timeout_expire(tank: SimDevice) -> None:
    tank.faults.configure(latency_ms=400)
    tank.faults.enable(Fault.LATENCY)
    impatient = await connect(tank.port, timeout=0.1)
    with pytest.raises(ModbusException):
        await level(impatient)
    impatient.close()
    patient = await connect(tank.port, timeout=2.0)
    assert await level(patient) == pytest.approx(tank.values()["level"], abs=0.05)
    patient.close()


async def test_swapped_words_decode_wrong_in_big_order_and_right_when_swapped_back(
        tank: SimDevice, client: AsyncModbusTcpClient) -> None:
    tank.faults.enable(Fault.SWAP_WORDS)
    words = (await client.read_input_registers(0, count=2)).registers
    truth = tank.values()["level"]
    assert f32(words) != pytest.approx(truth, abs=0.5)
    assert f32(words[::-1]) == pytest.approx(truth, abs=0.01)


async def test_control_registers_mirror_the_switch_and_flip_it(tank: SimDevice,
                                                               client: AsyncModbusTcpClient) -> None:
    tank.faults.enable(Fault.NOISE)
    assert (await client.read_holding_registers(CONTROL_BASE, count=5)).registers == [2, 500, 50, 4, 0]
    await client.write_registers(CONTROL_BASE, [int(Fault.FROZEN | Fault.LATENCY), 20])
    assert tank.faults.active == Fault.FROZEN | Fault.LATENCY
    assert tank.faults.settings.latency_ms == 20
    refused = await client.write_register(CONTROL_BASE + 3, 7)
    assert refused.isError() and refused.exception_code == 3


def test_float_helper_decodes_big_endian_words() -> None:
    assert f32(list(struct.unpack(">HH", struct.pack(">f", 1.5)))) == 1.5
