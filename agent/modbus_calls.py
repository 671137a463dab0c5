"""The client side of ModbusLink: making a client, one request per table, and "did it answer".

A client (agent/modbus_wire.py WireClient) is made for an endpoint's kind
(agent/endpoint_config.py): Modbus TCP (MBAP framing), Modbus RTU on a serial device (pyserial,
through pymodbus's serial transport), or RTU frames over a TCP connection (a serial gateway in
transparent mode). The unit id goes in each request (`device_id`).

A client never retries nor reconnects: the link owns that policy (agent/modbus.py), and a client
whose request timed out is closed, never reused (DESIGN pitfall: a late reply would answer a
later request).
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from agent.endpoint_config import Endpoint
from agent.modbus_wire import Answer, WireClient
from agent.registers import ReadRequest
from contracts.schema import Point, Table

DEADLINE_MARGIN_S = 0.1
"""Our own deadline sits this far beyond the client's, so the client's timeout normally fires first
and ours only catches a hang below it."""

PROBE_POLL_S = 0.01
"""How often a probe checks that its connection is still open: a cut link closes at once, and the
probe must not wait out its timeout for it."""

READ_FC = {Table.COIL: 1, Table.DISCRETE: 2, Table.HOLDING: 3, Table.INPUT: 4}
"""The read function code of each table (Modbus Application Protocol v1.1b3, 6.1-6.4)."""


def new_client(endpoint: Endpoint, timeout_s: float) -> WireClient:
    """A client for `endpoint`; `timeout_s` is its connect and reply timeout (a probe may wait
    less than the endpoint's)."""
    return WireClient(endpoint, timeout_s)


async def answered(client: WireClient, request: ReadRequest) -> bool:
    """Whether the device answers `request` (any answer, even an exception) before the client's
    timeout; False as soon as the connection is closed under it."""
    call = asyncio.ensure_future(read_call(client, request))
    try:
        while not call.done():
            if not client.connected:
                return False
            await asyncio.wait({call}, timeout=PROBE_POLL_S)
        call.result()
        return True
    finally:
        if not call.done():
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)


def read_call(client: WireClient, request: ReadRequest) -> Awaitable[Answer]:
    """FC1-FC4 by table: one read of `request.count` addresses from `request.start`."""
    return client.read(READ_FC[request.table], request.start, request.count, request.unit_id)


def write_call(client: WireClient, point: Point, raw: list[int] | bool) -> Awaitable[Answer]:
    """FC5 for a coil, FC6 for one register, FC16 for several."""
    if isinstance(raw, bool):
        return client.write_coil(point.address, raw, device_id=point.unit_id)
    if len(raw) == 1:
        return client.write_register(point.address, raw[0], device_id=point.unit_id)
    return client.write_registers(point.address, raw, device_id=point.unit_id)
