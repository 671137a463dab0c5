"""One suite over MemoryLink and the real ModbusLink (against a pymodbus server on loopback):
whatever the pure agent tests learn from MemoryLink holds for the device link in production."""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from agent.errors import DeviceLinkError
from agent.link import DeviceLink, MemoryLink
from agent.modbus import ModbusLink
from agent.registers import plan_reads
from contracts.inputs import Quality
from contracts.schema import DataType, Direction, Point, Table
from tests.agent.modbus_server import bank_server


def pt(name: str, table: Table, address: int, type: DataType = DataType.UINT16,
       direction: Direction = Direction.READ, **kw: object) -> Point:
    return Point(name=name, unit_id=1, table=table, address=address, type=type, direction=direction,
                 **kw)  # type: ignore[arg-type]


LEVEL = pt("level", Table.INPUT, 0, DataType.FLOAT32)
TEMP = pt("temp", Table.INPUT, 2, DataType.INT16, scale=0.1)
RUNNING = pt("running", Table.DISCRETE, 5, DataType.BOOL)
SPEED = pt("speed", Table.HOLDING, 20, direction=Direction.WRITE, scale=0.1)
SETPOINT = pt("setpoint", Table.HOLDING, 22, DataType.FLOAT32, direction=Direction.WRITE)
VALVE = pt("valve", Table.COIL, 13, DataType.BOOL, direction=Direction.WRITE)
MISSING = pt("missing", Table.HOLDING, 500)
EXACT = 1.5 + 2**-20
"""Exact in float32, with a non-zero low word (0x3FC0_0008), so both words must be written."""
POINTS = (LEVEL, TEMP, RUNNING, SPEED, SETPOINT, VALVE)


def device() -> MemoryLink:
    """The device state both links see: level 2.5 m (float32 0x4020_0000), temp -1.5, running."""
    return MemoryLink({
        (1, Table.INPUT): {0: 0x4020, 1: 0x0000, 2: 0xFFF1},
        (1, Table.DISCRETE): {i: i == 5 for i in range(16)},
        (1, Table.HOLDING): {i: 0 for i in range(20, 24)},
        (1, Table.COIL): {i: False for i in range(16)},
    })


@dataclass
class Rig:
    link: DeviceLink
    bank: MemoryLink  # the device's registers, for playing the device or a second master


@pytest.fixture(params=["memory", "modbus"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    bank = device()
    if request.param == "memory":
        await bank.connect()
        yield Rig(link=bank, bank=bank)
        await bank.close()
        return
    async with bank_server(bank) as (_, _, port):
        link = ModbusLink("127.0.0.1", port, timeout_s=0.5)
        await link.connect()
        try:
            yield Rig(link=link, bank=bank)
        finally:
            await link.close()


async def test_read_decodes_every_planned_point_as_good_at_the_cycle_time(rig: Rig) -> None:
    readings = await rig.link.read(plan_reads(POINTS), now_ms=1234)
    assert {n: r.value for n, r in readings.items()} == {
        "level": 2.5, "temp": pytest.approx(-1.5), "running": True, "speed": 0.0, "setpoint": 0.0,
        "valve": False}
    assert all(r.quality is Quality.GOOD and r.ts_ms == 1234 for r in readings.values())


async def test_written_values_read_back_through_every_write_function(rig: Rig) -> None:
    await rig.link.write(SPEED, 120.0)     # one register
    await rig.link.write(SETPOINT, EXACT)  # two registers
    await rig.link.write(VALVE, True)      # one coil
    readings = await rig.link.read(plan_reads(POINTS), now_ms=1)
    assert (readings["speed"].value, readings["setpoint"].value, readings["valve"].value) == (
        pytest.approx(120.0), EXACT, True)
    assert rig.bank.get(1, Table.HOLDING, 20, 4) == [1200, 0, 0x3FC0, 0x0008]


async def test_a_missing_address_fails_only_its_own_request_with_exception_2(rig: Rig) -> None:
    readings = await rig.link.read(plan_reads((*POINTS, MISSING)), now_ms=1)
    assert readings["missing"].quality is Quality.BAD
    assert readings["missing"].reason == "exception:2"
    assert all(readings[p.name].good for p in POINTS)


async def test_a_second_master_change_shows_in_the_next_read(rig: Rig) -> None:
    rig.bank.set(1, Table.HOLDING, 20, [555])
    readings = await rig.link.read(plan_reads([SPEED]), now_ms=1)
    assert readings["speed"].value == pytest.approx(55.5)


async def test_write_to_a_missing_address_raises_with_the_exception_code(rig: Rig) -> None:
    with pytest.raises(DeviceLinkError) as err:
        await rig.link.write(pt("ghost", Table.HOLDING, 900, direction=Direction.WRITE), 1)
    assert err.value.reason == "exception:2" and err.value.category == "adapters"


async def test_write_to_a_read_only_table_is_refused_before_any_io(rig: Rig) -> None:
    with pytest.raises(DeviceLinkError) as err:
        await rig.link.write(TEMP, 1.0)
    assert err.value.reason == "not_writable"


async def test_a_value_out_of_raw_range_is_refused_and_the_device_is_untouched(rig: Rig) -> None:
    with pytest.raises(DeviceLinkError) as err:
        await rig.link.write(SPEED, 7000.0)  # raw 70000 > uint16
    assert err.value.reason == "encode" and "speed" in str(err.value)
    assert rig.bank.get(1, Table.HOLDING, 20, 1) == [0]


async def test_after_close_reads_are_bad_disconnected_and_writes_raise(rig: Rig) -> None:
    await rig.link.close()
    assert not rig.link.connected
    readings = await rig.link.read(plan_reads(POINTS), now_ms=7)
    assert {r.reason for r in readings.values()} == {"disconnected"}
    assert all(r.ts_ms == 7 and r.value is None for r in readings.values())
    with pytest.raises(DeviceLinkError) as err:
        await rig.link.write(VALVE, True)
    assert err.value.reason == "disconnected"


async def test_connect_again_after_close_restores_reads(rig: Rig) -> None:
    await rig.link.close()
    await rig.link.connect()
    assert rig.link.connected
    assert (await rig.link.read(plan_reads([LEVEL]), now_ms=1))["level"].value == 2.5
