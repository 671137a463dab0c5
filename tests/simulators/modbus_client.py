"""A real pymodbus client on a simulator at 127.0.0.1, and the float32 its tank reports."""
from __future__ import annotations

import struct
from collections.abc import Sequence

from pymodbus.client import AsyncModbusTcpClient

DEADLINE_S = 5.0


def f32(words: Sequence[int]) -> float:
    """Two big-endian registers as a float32 (the tank's level at input 0-1)."""
    return float(struct.unpack(">f", struct.pack(">HH", *words))[0])


async def connect(port: int, timeout: float = 1.0) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0,
                                  reconnect_delay=0)
    assert await client.connect()
    return client
