"""The pymodbus TCP server a single SimDevice serves on, with the faults that act on connections.

Rules: while `refusing()` (DROP) a new connection is hung up at once, and `hang_up_all` closes the
open ones; while `hanging()` (HANG) every request received is consumed and forgotten — never
answered, never applied, not even after the hang ends — while the connection stays open, as a
hung PLC's does. Both predicates are the device's (its fault switch), asked per event.
"""
from __future__ import annotations

from collections.abc import Callable

from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import SimDevice as PmSimDevice


class FaultyHandler(ServerRequestHandler):
    """Per-connection handler that hangs up at once while the device refuses connections (DROP),
    and swallows what it receives while the device hangs (HANG)."""

    server: FaultyServer

    def callback_connected(self) -> None:
        super().callback_connected()
        if self.server.refusing():
            self.close()

    def callback_data(self, data: bytes, addr: tuple[str, int] | None = None) -> int:
        if self.server.hanging():
            return len(data)  # consumed and forgotten: no answer, no write applied
        return int(super().callback_data(data, addr))


class FaultyServer(ModbusTcpServer):
    """ModbusTcpServer whose connections are FaultyHandlers asking `refusing` and `hanging`."""

    def __init__(self, device: PmSimDevice, *, address: tuple[str, int],
                 refusing: Callable[[], bool], hanging: Callable[[], bool]) -> None:
        super().__init__(device, address=address)
        self.refusing, self.hanging = refusing, hanging

    def callback_new_connection(self) -> FaultyHandler:
        return FaultyHandler(self, self.trace_packet, self.trace_pdu,  # type: ignore[no-untyped-call]
                             self.trace_connect)

    def hang_up_all(self) -> None:
        for connection in list(self.active_connections.values()):
            connection.close()
