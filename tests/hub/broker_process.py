"""A broker in its own process, to kill -9 and restart on the same port with nothing persisted.

`BrokerProcess("mosquitto" | "amqtt", tmp_path)`: Mosquitto runs from its binary with our rendered
ACL and password file (`persistence false`); amqtt runs the hub's EmbeddedBroker in a subprocess
(`python -m tests.hub.broker_process PORT`), holding everything in memory. Both serve the test
FLEET on 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FLEET, BrokerEndpoint, fleet_specs, free_port, write_mosquitto_config

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0
KINDS = ("amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto))
"""Parametrize broker tests over both; the Mosquitto case carries the `mosquitto` marker."""


class BrokerProcess:
    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind, self.workdir, self.port = kind, workdir, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{kind}.log"
        if kind == "mosquitto":
            binary = shutil.which("mosquitto") or shutil.which(
                "mosquitto", path="/usr/sbin:/usr/local/sbin")
            if binary is None:
                pytest.skip("mosquitto binary not found")
            self._argv = [binary, "-c", str(write_mosquitto_config(workdir, self.port))]
        else:
            self._argv = [sys.executable, "-m", "tests.hub.broker_process", str(self.port)]

    @property
    def endpoint(self) -> BrokerEndpoint:
        return BrokerEndpoint(host="127.0.0.1", port=self.port, users=FLEET)

    @property
    def url(self) -> str:
        return self.endpoint.url

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self._argv, cwd=REPO, stdout=subprocess.DEVNULL,
                                         stderr=log, env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited {self.proc.returncode}: {self.log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
                return
            time.sleep(0.05)  # polling interval of a bounded wait
        raise TimeoutError(f"{self.kind} not listening on {self.port} after {START_TIMEOUT_S} s")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def __enter__(self) -> BrokerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _serve(port: int) -> None:
    from hub.broker import EmbeddedBroker
    async with EmbeddedBroker("127.0.0.1", port, users=fleet_specs()):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
