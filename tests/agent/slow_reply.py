"""A Modbus TCP proxy on loopback that holds back one request: a reply that comes too late (a
loaded machine, a busy PLC), made for real on a socket, with the simulator behind it unchanged.

`arm(function_code)`: the next request with that function code, on whatever connection, is held
`delay_s` before it is forwarded (and everything after it on that connection with it). The agent's
Modbus timeout fires meanwhile; it closes that socket, and its next connection is not held."""
from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

MBAP = 7
"""Modbus TCP header: transaction id, protocol id, length (2 bytes each), unit id."""


class SlowReply:
    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port, self.delay_s = target_port, delay_s
        self.port = 0
        self.held = 0  # requests held so far
        self._armed: int | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def arm(self, function_code: int) -> None:
        self._armed = function_code

    async def __aenter__(self) -> SlowReply:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for task in (self._requests(reader, up_writer), self._pipe(up_reader, writer)):
            t = asyncio.create_task(task)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _requests(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                header = await src.readexactly(MBAP)
                body = await src.readexactly(int.from_bytes(header[4:6], "big") - 1)
                if self._armed is not None and body[0] == self._armed:
                    self._armed, self.held = None, self.held + 1
                    await asyncio.sleep(self.delay_s)
                dst.write(header + body)
                await dst.drain()
        dst.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()
