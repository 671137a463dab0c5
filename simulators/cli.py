"""`fieldpact sim ...`: run a simulated device, and flip faults in a running one over Modbus.

    fieldpact sim device --model tank --port 5020 [--host 127.0.0.1] [--unit 1] [--tick-ms 100]
                         [--fault frozen ...] [--initial level=1.0 ...]
    fieldpact sim line (--serial PATH | --port N) --device tank:1 [--device tank:2 ...]
                       [--baud 19200] [--parity E] [--stop-bits 1] [--tick-ms 100]
    fieldpact sim fault --port 5020 [--enable frozen ...] [--disable noise ...] [--clear]
                        [--latency-ms N] [--noise-milli N] [--exception-code N] [--drop-for-ms N]
                        [--hang-for-ms N]

`sim fault` talks to the simulator through its control holding registers (9000..), so it works
across processes. A DROP enabled remotely without --drop-for-ms (or a HANG without --hang-for-ms)
can only be cleared from the simulator's own process: the device refuses or ignores every request
meanwhile. `sim device --port 0` binds an ephemeral port and prints it on its `listening` line, so
tests can run the simulator as its own process (and SIGSTOP/SIGCONT it). `sim line` serves several
devices, one per unit id, on one Modbus RTU line: on a serial device (`--serial`, e.g. one end of a
pty pair) or as RTU frames over TCP (`--port`: a serial gateway); its `listening` line says where.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from simulators.faults import (
    ALL_FAULTS, CONTROL_BASE, CONTROL_COUNT, Control, Fault, FaultSettings, fault_names,
    from_registers,
)
from simulators.models import ModelKind
from simulators.line import DEFAULT_BAUD, SimLine
from simulators.server import DEFAULT_TICK_MS, SimDevice, SimulatorError

__all__ = ["Fault", "flip_faults", "register", "serve_device"]

DEFAULT_PORT = 5020
"""Unprivileged stand-in for Modbus TCP's 502 (Modbus Messaging on TCP/IP Guide v1.0b, 4.1)."""
CLIENT_TIMEOUT_S = 2.0


def register(subparsers: Any) -> None:
    """Add `sim device` and `sim fault` to the top-level `fieldpact` parser."""
    sim = subparsers.add_parser("sim", help="Modbus device simulators")
    commands = sim.add_subparsers(dest="sim_command", required=True)
    _add_device(commands.add_parser("device", help="serve a simulated device until SIGINT/SIGTERM"))
    _add_fault(commands.add_parser("fault", help="flip faults in a running simulator"))
    _add_line(commands.add_parser("line", help="serve devices on one Modbus RTU line until SIGINT/SIGTERM"))


def _add_connection(parser: argparse.ArgumentParser, port_default: int | None) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port_default, required=port_default is None)
    parser.add_argument("--unit", type=int, default=1, help="Modbus unit id")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, choices=[k.value for k in ModelKind])
    _add_connection(p, DEFAULT_PORT)
    p.add_argument("--tick-ms", type=int, default=DEFAULT_TICK_MS)
    p.add_argument("--fault", type=Fault.parse, action="append", default=[],
                   help=f"start with this fault ({fault_names(ALL_FAULTS)})")
    p.add_argument("--initial", type=_assignment, action="append", default=[],
                   metavar="NAME=VALUE", help="initial engineering value, e.g. level=1.0")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda args: asyncio.run(serve_device(args)))


def _add_fault(p: argparse.ArgumentParser) -> None:
    _add_connection(p, None)
    p.add_argument("--enable", type=Fault.parse, action="append", default=[])
    p.add_argument("--disable", type=Fault.parse, action="append", default=[])
    p.add_argument("--clear", action="store_true", help="disable every fault first")
    for name in ("latency-ms", "noise-milli", "exception-code", "drop-for-ms", "hang-for-ms"):
        p.add_argument(f"--{name}", type=int)
    p.set_defaults(func=lambda args: asyncio.run(flip_faults(args)))


def _add_line(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--serial", help="serial device to serve the line on (RTU)")
    where.add_argument("--port", type=int, help="TCP port for RTU frames over TCP (0: ephemeral)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--device", type=_unit_device, action="append", required=True,
                   metavar="MODEL:UNIT", help="a device on the line, e.g. tank:2")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    p.add_argument("--parity", choices=["N", "E", "O"], default="E")
    p.add_argument("--stop-bits", type=int, choices=[1, 2], default=1)
    p.add_argument("--tick-ms", type=int, default=DEFAULT_TICK_MS)
    p.set_defaults(func=lambda args: asyncio.run(serve_line(args)))


def _unit_device(text: str) -> tuple[str, int]:
    model, sep, unit = text.partition(":")
    if not sep or not unit.isdigit() or model not in {k.value for k in ModelKind}:
        raise argparse.ArgumentTypeError(f"{text!r} is not MODEL:UNIT (models: "
                                         f"{', '.join(k.value for k in ModelKind)})")
    return model, int(unit)


@contextlib.contextmanager
def _stop_on_signal() -> Iterator[asyncio.Event]:
    """An event SIGINT or SIGTERM sets while the block runs (the handlers are removed after)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def serve_line(args: argparse.Namespace) -> int:
    """Serve the line until SIGINT/SIGTERM; 0, or 1 if it cannot start."""
    with _stop_on_signal() as stop:
        devices = [SimDevice(model, unit_id=unit, tick_ms=args.tick_ms)
                   for model, unit in args.device]
        try:
            async with SimLine(devices, serial=args.serial, host=args.host, port=args.port or 0,
                               baud=args.baud, parity=args.parity,
                               stop_bits=args.stop_bits) as line:
                print(f"listening where={line.where} port={line.port}", flush=True)
                await stop.wait()
        except (SimulatorError, ValueError) as exc:
            print(f"error: {exc}", flush=True)
            return 1
    return 0


def _assignment(text: str) -> tuple[str, bool | float]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    if raw.lower() in ("true", "false"):
        return name, raw.lower() == "true"
    try:
        return name, float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: value must be a number or true/false") from None


async def serve_device(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; returns 0, or 1 if the device cannot start."""
    with _stop_on_signal() as stop:
        try:
            async with SimDevice(args.model, host=args.host, port=args.port, unit_id=args.unit,
                                 tick_ms=args.tick_ms, initial=dict(args.initial),
                                 seed=args.seed) as device:
                for fault in args.fault:
                    device.faults.enable(fault)
                print(f"listening host={args.host} port={device.port} model={args.model}",
                      flush=True)
                await stop.wait()
        except (SimulatorError, ValueError, KeyError) as exc:
            print(f"error: {exc}", flush=True)
            return 1
    return 0


def _new_words(words: list[int], args: argparse.Namespace) -> list[int]:
    mask = Fault(0) if args.clear else Fault(words[Control.MASK])
    for fault in args.enable:
        mask |= fault
    for fault in args.disable:
        mask &= ~fault
    words = [int(mask), *words[1:]]
    for control, value in ((Control.LATENCY_MS, args.latency_ms), (Control.NOISE_MILLI, args.noise_milli),
                           (Control.EXCEPTION_CODE, args.exception_code),
                           (Control.DROP_FOR_MS, args.drop_for_ms),
                           (Control.HANG_FOR_MS, args.hang_for_ms)):
        if value is not None:
            words[control] = value
    from_registers(FaultSettings(), 0, words)  # raises ValueError before we write nonsense
    return words


async def flip_faults(args: argparse.Namespace) -> int:
    """Read-modify-write the control registers of the simulator at host:port; 0 or 1 (printed)."""
    client = AsyncModbusTcpClient(args.host, port=args.port, timeout=CLIENT_TIMEOUT_S, retries=0)
    try:
        if not await client.connect():
            print(f"error: cannot connect to {args.host}:{args.port}")
            return 1
        current = await client.read_holding_registers(CONTROL_BASE, count=CONTROL_COUNT,
                                                      device_id=args.unit)
        if current.isError():
            print(f"error: control registers answered {current}")
            return 1
        words = _new_words(list(current.registers), args)
        written = await client.write_registers(CONTROL_BASE, words, device_id=args.unit)
        if written.isError():
            print(f"error: write refused: {written}")
            return 1
    except (ModbusException, ValueError) as exc:
        print(f"error: {exc}")
        return 1
    finally:
        client.close()
    print(f"faults host={args.host} port={args.port} active={fault_names(Fault(words[0]))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m simulators.cli sim device ...`) until fieldpact's CLI lists us."""
    parser = argparse.ArgumentParser(prog="fieldpact")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
