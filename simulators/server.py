"""A simulated Modbus TCP device: a process model behind a real pymodbus server, with faults.

Theory of operation:
- The device owns a register image (our tables, sparse dicts: simulators/image.py) and the model
  state. pymodbus 3.16 keeps its own copy of the registers (SimDevice/SimData); its documented
  `action` hook is called on every request with the live register list, *before* a write is
  applied. The hook (1) applies request faults (exception, latency), (2) takes client writes into
  our image and the model, and (3) copies our image into pymodbus's list for the addresses
  requested. So our image is the truth and pymodbus only frames requests.
- Addressing: SimData address N is PDU address N (pymodbus 3.16, no 1-offset any more); bit tables
  use bit addressing (coil 13 is bit 13). tests/simulators/test_server.py proves it on the wire.
- A tick task advances the model by the elapsed time and publishes every point into the image,
  through the analog faults (noise, spike, frozen, word swap).
- Holding registers CONTROL_BASE.. (9000) mirror the fault switch; they are exempt from the request
  faults so a remote controller can always clear them (except DROP and HANG: see
  faults.Control.DROP_FOR_MS / HANG_FOR_MS).
- HANG is a hung PLC: connections are accepted and kept open, but every request received while it
  lasts is swallowed — never answered, never applied, not even after the hang ends — while the
  process model keeps running (the TCP server that DROP and HANG act on: simulators/tcp_server.py).
  (A SIGSTOPped simulator process is the other kind of hang: the kernel queues the requests, and
  they are answered and applied late on SIGCONT.)
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType as PmDataType
from pymodbus.simulator import SimData
from pymodbus.simulator import SimDevice as PmSimDevice

from contracts.schema import Direction, Table
from contracts.types import PointName, Value
from simulators.faults import (
    CONTROL_BASE, CONTROL_COUNT, Fault, FaultSettings, FaultSwitch, from_registers, perturb,
    to_registers,
)
from simulators.image import RegisterImage
from simulators.lifecycle import Served
from simulators.models import ProcessModel, model_for
from simulators.tcp_server import FaultyServer

log = logging.getLogger(__name__)

REGISTER_SPAN = 64
"""Addresses 0..63 answer in every register table (the models use 0..21); others get exception 2."""
BIT_SPAN = 64
"""Coils and discrete inputs 0..63 answer."""
DEFAULT_TICK_MS = 100

_TABLE_OF_FC = {1: Table.COIL, 5: Table.COIL, 15: Table.COIL, 2: Table.DISCRETE, 4: Table.INPUT,
                3: Table.HOLDING, 6: Table.HOLDING, 16: Table.HOLDING, 22: Table.HOLDING,
                23: Table.HOLDING}
"""Function code -> table (Modbus Application Protocol v1.1b3, section 6)."""


class SimulatorError(RuntimeError):
    """The simulator could not start (e.g. the port is taken)."""


class WriteRecord(NamedTuple):
    """One client write: wall-clock time, table, first address, values as written."""

    ts: float
    table: Table
    address: int
    values: tuple[int | bool, ...]


class SimDevice(Served):
    """A simulated device serving `model` on Modbus TCP; use as `async with SimDevice("tank") as d`.

    `port=0` binds an ephemeral port, read back as `.port`. `initial` sets engineering values
    before the first tick (e.g. {"level": 1.0}). `time_scale` speeds up the process (2.0: twice as
    fast as wall time). Raises ValueError for an unknown model or point, SimulatorError if the port
    cannot be bound."""

    def __init__(self, model: str, *, host: str = "127.0.0.1", port: int = 0, unit_id: int = 1,
                 tick_ms: int = DEFAULT_TICK_MS, initial: Mapping[PointName, Value] | None = None,
                 seed: int = 0, time_scale: float = 1.0) -> None:
        self.model: ProcessModel = model_for(model)
        self.host, self.unit_id, self.tick_s, self.time_scale = host, unit_id, tick_ms / 1000, time_scale
        self._requested_port = port
        self._state = self.model.initial(initial)
        self._image = RegisterImage()
        self._rng = random.Random(seed)
        self.faults = FaultSwitch()
        self.faults.subscribe(self._on_faults_changed)
        self.write_log: list[WriteRecord] = []
        self._server: FaultyServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._delayed: set[asyncio.Task[Any]] = set()
        self._drop_timer: asyncio.TimerHandle | None = None
        self._hang_timer: asyncio.TimerHandle | None = None
        self.port = 0
        self._publish()

    # -- lifecycle (async with: simulators/lifecycle.py) ---------------------------------------

    async def start(self) -> None:
        """Bind and serve; raises SimulatorError if the address cannot be bound."""
        self._server = FaultyServer(self._pymodbus_device(), address=(self.host, self._requested_port),
                               refusing=lambda: self.faults.settings.has(Fault.DROP),
                               hanging=lambda: self.faults.settings.has(Fault.HANG))
        try:
            await self._server.serve_forever(background=True)
        except RuntimeError as exc:
            raise SimulatorError(f"cannot listen on {self.host}:{self._requested_port}: {exc}") from exc
        self.port = self._server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.start_ticks()
        log.info("sim_started model=%s host=%s port=%d unit=%d", self.model.name, self.host,
                 self.port, self.unit_id)

    def start_ticks(self) -> None:
        """Run the process model (what start() does besides serving; simulators/line.py serves
        several devices on one line and starts each one's model with this)."""
        tick = asyncio.create_task(self._run_ticks(), name=f"sim-tick-{self.model.name}-{self.unit_id}")
        self._tasks.add(tick)

    async def stop(self) -> None:
        """Stop serving, hang up every client and cancel background work. Idempotent."""
        for timer in (self._drop_timer, self._hang_timer):
            if timer is not None:
                timer.cancel()
        pending = self._tasks | self._delayed
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        self._delayed.clear()
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
            log.info("sim_stopped model=%s port=%d", self.model.name, self.port)

    def pymodbus_device(self) -> PmSimDevice:
        """This device (its unit id, its register spans, our request hook) for a pymodbus server."""
        return self._pymodbus_device()

    def _pymodbus_device(self) -> PmSimDevice:
        def bits() -> list[SimData]:
            return [SimData(address=0, values=[False] * BIT_SPAN, datatype=PmDataType.BITS)]

        def regs(address: int, count: int) -> SimData:
            return SimData(address=address, count=count, values=0, datatype=PmDataType.REGISTERS)

        holding = [regs(0, REGISTER_SPAN), regs(CONTROL_BASE, CONTROL_COUNT)]
        return PmSimDevice(id=self.unit_id, simdata=(bits(), bits(), holding, [regs(0, REGISTER_SPAN)]),
                           action=self._on_request)

    # -- test and demo API ----------------------------------------------------------------------

    @property
    def state(self) -> Any:
        """The model's current state (a frozen dataclass)."""
        return self._state

    def values(self) -> dict[PointName, Value]:
        """True engineering values of every point, before faults (what the process really does)."""
        return self.model.values(self._state)

    def set(self, name: PointName, value: Value) -> None:
        """Force a point to `value` (engineering units); raises KeyError for a derived point."""
        self._state = self.model.with_value(self._state, name, value)
        self._publish()

    # -- the model side -------------------------------------------------------------------------

    async def _run_ticks(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.tick_s)  # the scan period of the simulated process
            now = loop.time()
            self._state = self.model.advance(self._state, (now - last) * self.time_scale)
            last = now
            self._publish()

    def _publish(self) -> None:
        settings = self.faults.settings
        if settings.has(Fault.FROZEN):
            return
        values, spans = self.model.values(self._state), dict(self.model.analog)
        for point in self.model.points:
            value = values[point.name]
            if point.table.is_bit:
                self._image.store_bit(point, bool(value))
                continue
            if point.name in spans:
                value = perturb(float(value), spans[point.name], settings, self._rng)
            self._image.store_words(point, value, swap=settings.has(Fault.SWAP_WORDS))

    # -- the Modbus side ------------------------------------------------------------------------

    async def _on_request(self, function_code: int, start: int, address: int, count: int,
                          registers: list[int], written: list[int] | list[bool] | None,
                          ) -> ExcCodes | None:
        table = _TABLE_OF_FC[function_code]
        control = table is Table.HOLDING and address >= CONTROL_BASE
        if not control and (refused := await self._request_faults()):
            return refused
        if written is not None:
            if (refused := self._accept_write(table, address, written, control)) is not None:
                return refused
        if table.is_bit:
            self._image.fill_bits(table, start, address // 16, count, registers)
        else:
            self._image.fill_registers(table, start, address, count, registers,
                                       to_registers(self.faults.settings))
        return None

    async def _request_faults(self) -> ExcCodes | None:
        settings = self.faults.settings
        if settings.has(Fault.LATENCY):
            task = asyncio.current_task()
            if task is not None:
                self._delayed.add(task)
            try:
                await asyncio.sleep(settings.latency_ms / 1000)  # the injected fault itself
            finally:
                self._delayed.discard(task)
        if settings.has(Fault.EXCEPTION):
            return ExcCodes(settings.exception_code)
        return None

    def _accept_write(self, table: Table, address: int, written: list[int] | list[bool],
                      control: bool) -> ExcCodes | None:
        if control:
            try:
                self.faults.update(from_registers(self.faults.settings, address - CONTROL_BASE,
                                                  [int(v) for v in written]))
            except ValueError as exc:
                log.warning("sim_control_refused address=%d values=%s reason=%s", address,
                            list(written), exc)
                return ExcCodes.ILLEGAL_VALUE
            return None
        self.write_log.append(WriteRecord(time.time(), table, address, tuple(written)))
        self._image.write(table, address, written)
        self._take_written_points(table, address, address + len(written) - 1)
        self._publish()  # read-backs (e.g. pump_speed_feedback) follow the write at once
        return None

    def _take_written_points(self, table: Table, first: int, last: int) -> None:
        for point in self.model.points:
            if point.table is not table or point.direction is not Direction.WRITE:
                continue
            if point.address > last or point.last_address < first:
                continue
            self._state = self.model.with_value(self._state, point.name,
                                                self._image.value_of(point))

    # -- faults that act on connections ---------------------------------------------------------

    def _on_faults_changed(self, old: FaultSettings, new: FaultSettings) -> None:
        if new.has(Fault.DROP) and not old.has(Fault.DROP):
            self._start_drop(new.drop_for_ms)
        elif old.has(Fault.DROP) and not new.has(Fault.DROP) and self._drop_timer is not None:
            self._drop_timer.cancel()
            self._drop_timer = None
        if new.has(Fault.HANG) and not old.has(Fault.HANG):
            self._start_hang(new.hang_for_ms)
        elif old.has(Fault.HANG) and not new.has(Fault.HANG) and self._hang_timer is not None:
            self._hang_timer.cancel()
            self._hang_timer = None
        self._publish()  # a reading after enable/disable already shows the change

    def _start_drop(self, drop_for_ms: int) -> None:
        with contextlib.suppress(RuntimeError):  # no loop: not serving yet, nothing to hang up
            loop = asyncio.get_running_loop()
            if self._server is not None:
                # call_soon: the reply to the write that enabled DROP is flushed before hanging up.
                loop.call_soon(self._server.hang_up_all)
            if drop_for_ms:
                self._drop_timer = loop.call_later(drop_for_ms / 1000, self.faults.disable, Fault.DROP)

    def _start_hang(self, hang_for_ms: int) -> None:
        if hang_for_ms:
            with contextlib.suppress(RuntimeError):  # no loop: not serving yet
                loop = asyncio.get_running_loop()
                self._hang_timer = loop.call_later(hang_for_ms / 1000, self.faults.disable, Fault.HANG)
