"""A broker in its own process, to kill -9 and restart on the same port with nothing persisted.

`BrokerProcess("mosquitto" | "amqtt", tmp_path)`: Mosquitto runs from its binary with our rendered
ACL and password file (`persistence false`); amqtt runs the hub's EmbeddedBroker in a subprocess
(`python -m tests.hub.broker_process PORT`), holding everything in memory. Both serve the test
FLEET on 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FLEET, BrokerEndpoint, fleet_specs, mosquitto_binary, write_mosquitto_config
from tests.waiting import free_port, process_listening, stop_process

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
            self._argv = [mosquitto_binary(), "-c", str(write_mosquitto_config(workdir, self.port))]
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
        process_listening(self.proc, self.port, self.log, START_TIMEOUT_S)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
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
