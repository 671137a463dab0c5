"""The simulator tests' Modbus client, on the `tank` each test module defines."""
from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusTcpClient

from simulators.server import SimDevice
from tests.simulators.modbus_client import connect


@pytest.fixture
async def client(tank: SimDevice) -> AsyncIterator[AsyncModbusTcpClient]:
    c = await connect(tank.port)
    yield c
    c.close()
