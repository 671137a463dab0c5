"""A Modbus RTU line: several simulated devices, each on its own unit id, behind one pymodbus
server — on a serial device (an RS-485 line; tests use a pseudo-terminal pair, simulators/ptypair.py)
or on a TCP port with RTU framing (a serial gateway in transparent mode).

    async with SimLine([SimDevice("tank", unit_id=1), SimDevice("tank", unit_id=2)],
                       serial="/tmp/x/line-a") as line: ...
    async with SimLine([...], port=0) as line: line.port     # RTU frames over TCP

Each device keeps its own register image, process model and faults (simulators/server.py); the
line's server only frames requests and hands each to the device its unit id names. A unit id no
device has gets no answer, as on a real line (`ignore_missing_devices`). The connection faults
DROP and HANG are TCP-server behaviours of a single SimDevice and are not served on a line.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from simulators.lifecycle import Served
from simulators.server import SimDevice, SimulatorError

log = logging.getLogger(__name__)

DEFAULT_BAUD = 19200
"""Modbus over Serial Line v1.02, 2.5.1: 19200 bps is the required default rate."""


class SimLine(Served):
    """Devices on one RTU line: `serial` a device path, else TCP on host:port (0: ephemeral)."""

    def __init__(self, devices: Sequence[SimDevice], *, serial: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, baud: int = DEFAULT_BAUD,
                 parity: str = "E", stop_bits: int = 1) -> None:
        ids = [d.unit_id for d in devices]
        if not devices or len(set(ids)) != len(ids):
            raise ValueError(f"a line needs devices with distinct unit ids, got {ids}")
        self.devices = tuple(devices)
        self.serial, self.host, self._requested_port = serial, host, port
        self.baud, self.parity, self.stop_bits = baud, parity, stop_bits
        self.port = 0
        self._server: ModbusSerialServer | ModbusTcpServer | None = None

    def device(self, unit_id: int) -> SimDevice:
        return next(d for d in self.devices if d.unit_id == unit_id)

    async def start(self) -> None:
        """Serve and run every device's model; raises SimulatorError if it cannot serve."""
        context = [d.pymodbus_device() for d in self.devices]
        if self.serial is not None:
            self._server = ModbusSerialServer(
                context, framer=FramerType.RTU, port=self.serial, baudrate=self.baud,
                parity=self.parity, stopbits=self.stop_bits, ignore_missing_devices=True)
        else:
            self._server = ModbusTcpServer(context, framer=FramerType.RTU,
                                           address=(self.host, self._requested_port),
                                           ignore_missing_devices=True)
        try:
            await self._server.serve_forever(background=True)
        except (RuntimeError, OSError) as exc:
            raise SimulatorError(f"cannot serve the line on {self.where}: {exc}") from exc
        if self.serial is None:
            self.port = self._server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        for device in self.devices:
            device.start_ticks()
        log.info("sim_line_started where=%s units=%s", self.where,
                 ",".join(str(d.unit_id) for d in self.devices))

    @property
    def where(self) -> str:
        return f"rtu:{self.serial}" if self.serial is not None else f"rtu+tcp://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Stop serving and every device's model. Idempotent."""
        for device in self.devices:
            await device.stop()
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
