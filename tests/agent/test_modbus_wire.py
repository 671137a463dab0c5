"""agent/modbus_wire.py's framing, bytes in and answers out, without a socket: an answer is taken
only when it matches the request (transaction, unit, function, byte count, CRC)."""
from __future__ import annotations

import asyncio
import contextlib

import pytest
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer.rtu import FramerRTU

from agent.endpoint_config import Endpoint, EndpointKind
from agent.modbus_wire import Answer, WireClient, _Wire


def _rtu(frame: bytes) -> bytes:
    return frame + FramerRTU.compute_CRC(frame).to_bytes(2, "big")


async def _fed(rtu: bool, expect: tuple[int, int, int], *chunks: bytes) -> asyncio.Future[Answer]:
    wire = _Wire(rtu)
    wire.pending, wire.expect = asyncio.get_running_loop().create_future(), expect
    for chunk in chunks:
        wire.data_received(chunk)
    return wire.pending


async def test_a_tcp_answer_in_two_pieces_gives_its_registers() -> None:
    frame = bytes.fromhex("0007 0000 0007 01 03 04 00de 0001")
    answer = (await _fed(False, (7, 1, 3), frame[:5], frame[5:])).result()
    assert answer.registers == [222, 1] and not answer.isError()


async def test_a_tcp_gateway_answering_transaction_0_is_taken() -> None:
    answer = (await _fed(False, (7, 1, 3), bytes.fromhex("0000 0000 0005 01 03 02 0001"))).result()
    assert answer.registers == [1]


@pytest.mark.parametrize("frame, words", [
    ("0006 0000 0005 01 03 02 0001", "transaction 6"),   # the answer to an earlier request
    ("0007 0000 0005 02 03 02 0001", "unit 2"),
    ("0007 0000 0005 01 04 02 0001", "function 4"),
    ("0007 0000 0005 01 03 03 0001", "byte count"),
])
async def test_a_tcp_answer_to_another_request_is_refused(frame: str, words: str) -> None:
    future = await _fed(False, (7, 1, 3), bytes.fromhex(frame))
    with pytest.raises(ModbusIOException, match=words):
        future.result()


async def test_an_rtu_exception_answer_carries_its_code() -> None:
    answer = (await _fed(True, (0, 1, 3), _rtu(bytes.fromhex("01 83 02")))).result()
    assert answer.isError() and answer.exception_code == 2


async def test_rtu_coils_come_as_bits_and_a_bad_crc_is_refused() -> None:
    answer = (await _fed(True, (0, 2, 1), _rtu(bytes.fromhex("02 01 01 05")))).result()
    assert answer.bits[:4] == [True, False, True, False]
    bad = bytearray(_rtu(bytes.fromhex("02 01 01 05")))
    bad[-1] ^= 0xFF
    with pytest.raises(ModbusIOException, match="CRC"):
        (await _fed(True, (0, 2, 1), bytes(bad))).result()


async def test_each_request_gets_its_whole_timeout_from_the_one_lazy_timer() -> None:
    """The timer set by the first request fires before a later request's deadline: it must set
    itself again for that one, not fail it early (nor leave it waiting past its timeout)."""
    answered = 0
    writers: list[asyncio.StreamWriter] = []

    async def device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = await reader.readexactly(7)
                await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
                answered += 1
                if answered > 2:
                    continue  # hung from the third request on
                if answered == 2:
                    await asyncio.sleep(0.1)  # the device is slow to answer the second one
                writer.write(header[:4] + bytes.fromhex("0005 01 03 02 0001"))
                await writer.drain()

    server = await asyncio.start_server(device, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = WireClient(Endpoint(name="plc", kind=EndpointKind.TCP, host="127.0.0.1", port=port),
                        timeout_s=0.2)
    try:
        assert await client.connect()
        assert (await client.read(3, 0, 1, 1)).registers == [1]
        assert (await client.read(3, 0, 1, 1)).registers == [1]  # ~0.1 s after the first
        loop = asyncio.get_running_loop()
        sent = loop.time()
        with pytest.raises(TimeoutError):
            await client.read(3, 0, 1, 1)
        assert 0.19 <= loop.time() - sent < 0.6
    finally:
        client.close()
        server.close()
        for writer in writers:  # the server does not close its connections (Python 3.11)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()
