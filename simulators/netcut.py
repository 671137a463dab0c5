"""A TCP proxy whose link can be cut and restored: a network outage between an agent and its
broker, made for real on loopback (the broker sees the socket drop and publishes the last will).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType

log = logging.getLogger("fieldpact.sim.netcut")

CHUNK = 65536


class NetCut:
    """Listen on 127.0.0.1:`port` (0 = ephemeral) and forward to `target`. While cut, every
    connection is closed and new ones are accepted and closed at once (like a dead route)."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host, self._port = host, port
        self.port = 0
        self.is_cut = False
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> NetCut:
        self._server = await asyncio.start_server(self._accept, self.host, self._port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop_all()
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def cut(self) -> None:
        self.is_cut = True
        await self._drop_all()
        log.warning("netcut_cut target=%s:%s", *self.target)

    def restore(self) -> None:
        self.is_cut = False
        log.warning("netcut_restored target=%s:%s", *self.target)

    async def _drop_all(self) -> None:
        for w in list(self._writers):
            w.close()
        for t in list(self._pipes):
            t.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                await w.wait_closed()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_w))
        for src, dst in ((reader, up_w), (up_r, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(CHUNK):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()
            self._writers.discard(dst)
