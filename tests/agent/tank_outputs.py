"""The tank's outputs as the device itself holds them (pump speed in rpm, valve open), read
without the agent: from the simulator's own datastore, or over Modbus by a separate master.

Shared by the safe-state tests (tests/agent/test_safe_state_faults.py) and bench/safety.py, which
wait on `running` and `safe` with `tests.waiting.eventually`. Addresses are the tank-fill example's
(holding 20 = pump_speed, scale 0.1; coil 13 = valve_open)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from simulators.server import SimDevice

Probe = Callable[[], Awaitable[tuple[float, bool] | None]]
"""(pump speed, valve open) as the device holds them; None when the device does not answer."""

PUMP_SPEED, VALVE_OPEN, SCALE = 20, 13, 0.1
PROBE_TIMEOUT_S = 0.5


def in_process(sim: SimDevice) -> Probe:
    """The simulator's own datastore: answers even while the device hangs for its masters."""
    async def read() -> tuple[float, bool]:
        v = sim.values()
        return float(v["pump_speed"]), bool(v["valve_open"])
    return read


def over_modbus(port: int) -> Probe:
    """The device's registers through our own pymodbus client (a separate master)."""
    async def read() -> tuple[float, bool] | None:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=PROBE_TIMEOUT_S, retries=0)
        try:
            if not await client.connect():
                return None
            pump = await client.read_holding_registers(PUMP_SPEED, count=1, device_id=1)
            valve = await client.read_coils(VALVE_OPEN, count=1, device_id=1)
            if pump.isError() or valve.isError():
                return None
            return pump.registers[0] * SCALE, bool(valve.bits[0])
        except ModbusException:
            return None
        finally:
            client.close()
    return read


async def running(probe: Probe) -> bool:
    """The fill step's outputs: pump turning, valve open."""
    state = await probe()
    return state is not None and state[0] > 0 and state[1]


async def safe(probe: Probe) -> bool:
    """The tank-fill safe_state: pump stopped, valve closed."""
    return await probe() == (0.0, False)
