"""A null-modem cable made of pseudo-terminals: two device paths, bytes written to one come out of
the other — so a Modbus RTU master and a simulated line talk "serial" without hardware.

    with PtyPair() as (a, b):     # e.g. /tmp/ptyXXXX/a and /tmp/ptyXXXX/b
        ...  serve the line on a, point the agent's modbus-rtu endpoint at b

With `socat` on PATH (CI installs it: .ci/run), socat makes and links the two ptys. Otherwise the
pair is made here: two os.openpty() pairs, their slaves put in raw mode and symlinked as a and b,
and a relay thread copying between the two masters. Baud rate, parity and stop bits are accepted
and ignored by a pty, so a line runs as fast as the machine — except parity: Linux refuses to set
PARENB on a pty (tcsetattr EINVAL once pyserial reconfigures the port), so lines over a pty use
parity N. Every wait is bounded.
"""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
import tty
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 5.0
RELAY_POLL_S = 0.05
"""How often the relay thread checks that it should stop (select wakes at once on data)."""


class PtyPair:
    """Two linked pty paths; `use_socat=None` uses socat when it is on PATH."""

    def __init__(self, *, use_socat: bool | None = None) -> None:
        self.use_socat = shutil.which("socat") is not None if use_socat is None else use_socat
        self._dir = Path(tempfile.mkdtemp(prefix="fieldpact-pty-"))
        self.a, self.b = str(self._dir / "a"), str(self._dir / "b")
        self._proc: subprocess.Popen[bytes] | None = None
        self._fds: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> tuple[str, str]:
        self.start()
        return self.a, self.b

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Make the pair; raises RuntimeError if socat does not make it in time."""
        if self.use_socat:
            self._start_socat()
        else:
            self._start_relay()

    def _start_socat(self) -> None:
        self._proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.stop()
                raise RuntimeError("socat did not make the pty pair")
            time.sleep(0.01)

    def _start_relay(self) -> None:
        masters = []
        for link in (self.a, self.b):
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no line discipline: bytes pass as they are
            self._fds += [master, slave]  # the slave stays open, so the master never sees a hangup
            os.symlink(os.ttyname(slave), link)
            masters.append(master)
        self._thread = threading.Thread(target=self._relay, args=tuple(masters),
                                        name="pty-relay", daemon=True)
        self._thread.start()

    def _relay(self, ma: int, mb: int) -> None:
        other = {ma: mb, mb: ma}
        while not self._stop.is_set():
            ready, _, _ = select.select([ma, mb], [], [], RELAY_POLL_S)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                    os.write(other[fd], data)
                except OSError:
                    continue

    def stop(self) -> None:
        """Stop socat or the relay, close the ptys, remove the links. Idempotent."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=START_TIMEOUT_S)
            self._proc = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=START_TIMEOUT_S)
            self._thread = None
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        shutil.rmtree(self._dir, ignore_errors=True)
