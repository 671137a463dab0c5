"""The embedded broker's connection writer: packets written in one loop iteration leave in one
write, in order, and nothing written before a close is lost."""
from __future__ import annotations

import asyncio
from typing import Any

from hub.amqtt_connection import CoalescingWriter


class Transport:
    """What CoalescingWriter uses of an asyncio.StreamWriter, recording each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    async def drain(self) -> None:
        return None

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        return None

    def get_extra_info(self, name: str) -> Any:
        return None


async def test_packets_of_one_iteration_leave_in_one_write_in_order() -> None:
    raw = Transport()
    w = CoalescingWriter(raw)  # type: ignore[arg-type]
    for packet in (b"\x30\x01a", b"\x30\x01b", b"\x30\x01c"):
        w.write(packet)
        await w.drain()  # what amqtt does after each packet: no write has gone out yet
    assert raw.writes == []
    await asyncio.sleep(0)
    assert raw.writes == [b"\x30\x01a\x30\x01b\x30\x01c"]
    w.write(b"\xd0\x00")
    await asyncio.sleep(0)
    assert raw.writes[1:] == [b"\xd0\x00"]


async def test_what_was_written_before_a_close_is_sent_before_it() -> None:
    raw = Transport()
    w = CoalescingWriter(raw)  # type: ignore[arg-type]
    w.write(b"\x20\x02\x00\x00")  # a CONNACK refusal, then the close (hub/amqtt_session.py)
    await w.close()
    assert raw.writes == [b"\x20\x02\x00\x00"] and raw.closed
    w.write(b"late")
    await asyncio.sleep(0)
    assert raw.writes == [b"\x20\x02\x00\x00"]
