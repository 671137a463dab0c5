"""A real pymodbus TCP server on 127.0.0.1 whose registers live in a MemoryLink's banks.

Sharing the banks with a MemoryLink is what lets one suite run over both links with the same device
state. `delay_s` holds each read reply back after sampling the registers (a late reply carries the
value of its own time); `hook` runs before each request is served (a slow or stuck device).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice

from agent.link import MemoryLink
from contracts.schema import Table

_TABLE_OF_FC = {1: Table.COIL, 5: Table.COIL, 15: Table.COIL, 2: Table.DISCRETE,
                3: Table.HOLDING, 6: Table.HOLDING, 16: Table.HOLDING, 4: Table.INPUT}


@dataclass
class BankContext:
    """Duck-types pymodbus's server context (async_getValues/async_setValues/device_ids)."""

    bank: MemoryLink
    delay_s: float = 0.0
    hook: Callable[[int, int, int], Awaitable[None]] | None = None  # (unit, fc, address)
    requests: list[tuple[int, int, int, int]] = field(default_factory=list)  # (unit, fc, addr, count)

    def device_ids(self) -> list[int]:
        return sorted({unit for unit, _ in self.bank.banks})

    async def _before(self, unit: int, fc: int, address: int, count: int) -> None:
        self.requests.append((unit, fc, address, count))
        if self.hook is not None:
            await self.hook(unit, fc, address)

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> list[int] | list[bool] | ExcCodes:
        table = _TABLE_OF_FC[func_code]
        await self._before(device_id, func_code, address, count)
        words = self.bank.get(device_id, table, address, count)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # a slow device answers late with what it sampled
        if words is None:
            return ExcCodes.ILLEGAL_ADDRESS
        return [bool(w) for w in words] if table.is_bit else [int(w) for w in words]

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values: Sequence[int] | Sequence[bool]) -> ExcCodes | None:
        table = _TABLE_OF_FC[func_code]
        await self._before(device_id, func_code, address, len(values))
        if self.bank.get(device_id, table, address, len(values)) is None:
            return ExcCodes.ILLEGAL_ADDRESS
        self.bank.set(device_id, table, address, list(values))
        return None


@asynccontextmanager
async def bank_server(bank: MemoryLink) -> AsyncIterator[tuple[ModbusTcpServer, BankContext, int]]:
    """Serve `bank` on an ephemeral port; yields (server, context, port); always shut down."""
    server = ModbusTcpServer(SimDevice(id=0, simdata=SimData(0)), address=("127.0.0.1", 0))
    context = BankContext(bank)
    server.context = context  # type: ignore[assignment]
    await server.serve_forever(background=True)
    try:
        port = server.transport.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield server, context, port
    finally:
        await server.shutdown()
