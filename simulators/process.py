"""A simulator as its own OS process (`fieldpact sim device --port 0`), for faults that need one:
SIGSTOP/SIGCONT (a hung device whose kernel still accepts and queues requests), kill -9.

    with SimProcess("tank", initial={"level": 1.0}) as sim:
        sim.port            # the ephemeral port the child printed on its `listening` line
        sim.pause(); sim.resume()

The child is started with the running interpreter (`python -m simulators.cli sim device`), so it runs
the same code as the parent. Every wait is bounded: start raises SimulatorError if the child does
not print its port within `start_timeout_s`; exit terminates it, then kills it if it lingers.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from types import TracebackType

from contracts.types import PointName, Value
from simulators.server import SimulatorError

START_TIMEOUT_S = 15.0
"""A cold interpreter importing pymodbus on a loaded 2-core machine takes a few seconds."""
STOP_TIMEOUT_S = 5.0


class SimProcess:
    """A `fieldpact sim device` child process on 127.0.0.1 and an ephemeral port."""

    def __init__(self, model: str, *, tick_ms: int = 100,
                 initial: Mapping[PointName, Value] | None = None,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.model, self.tick_ms, self.initial = model, tick_ms, dict(initial or {})
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.paused = False

    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "simulators.cli", "sim", "device", "--model", self.model,
                "--port", "0", "--tick-ms", str(self.tick_ms)]
        for name, value in self.initial.items():
            args += ["--initial", f"{name}={str(value).lower() if isinstance(value, bool) else value}"]
        return args

    def start(self) -> None:
        """Start the child and read its port. Raises SimulatorError if it does not come up."""
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self._read_line()
        fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
        if not line.startswith("listening") or "port" not in fields:
            self.stop()
            raise SimulatorError(f"simulator did not start: {line[:80]!r}")
        self.port = int(fields["port"])

    def _read_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout_s
        buf = b""
        while not buf.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = os.read(self.proc.stdout.fileno(), 256)
            if not chunk:
                break  # the child exited
            buf += chunk
        return buf.decode(errors="replace").strip()

    def pause(self) -> None:
        """SIGSTOP: the process freezes; its listening socket still accepts and queues requests."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT: the process answers (and applies) what was queued, then runs on."""
        self._signal(signal.SIGCONT)
        self.paused = False

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None, "not started"
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """Terminate (after SIGCONT if paused), then kill if it lingers. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if self.paused:
            proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> SimProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class LineProcess(SimProcess):
    """`fieldpact sim line` as a child: devices (model, unit id) on one RTU line, on the serial
    device `serial` or (None) as RTU frames over TCP on an ephemeral port (`.port`)."""

    def __init__(self, devices: list[tuple[str, int]], *, serial: str | None = None,
                 baud: int = 19200, parity: str = "E", tick_ms: int = 100,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        super().__init__(devices[0][0], tick_ms=tick_ms, start_timeout_s=start_timeout_s)
        self.devices, self.serial, self.baud, self.parity = devices, serial, baud, parity

    def argv(self) -> list[str]:
        where = ["--serial", self.serial] if self.serial is not None else ["--port", "0"]
        args = [sys.executable, "-m", "simulators.cli", "sim", "line", *where, "--baud", str(self.baud),
                "--parity", self.parity, "--tick-ms", str(self.tick_ms)]
        for model, unit in self.devices:
            args += ["--device", f"{model}:{unit}"]
        return args
