"""The embedded broker in a process of its own, started and stopped by the hub, dying with it.

Why: amqtt is pure Python. In the hub's process it shares one interpreter lock with the API, the
sync side and SQLite; with 1,000 devices at 1 Hz it delayed telemetry and the API (bench/sync.py
measured 933 of 1,000 msgs/s handled and GET /api/devices/{id} p99 13 ms). In its own process it
has a core's worth of interpreter to itself, and the hub talks to it over loopback like to any
external broker.

Rules:
- The hub starts it (`BrokerProcess`, an async context manager like EmbeddedBroker) and hands it
  its logins — password hashes, never passwords — as one JSON line on its stdin. The child binds,
  answers `ready <port>` on stdout, and from then on holds stdin open as its lifeline.
- It dies with the hub: the child exits when its stdin reaches end of file, which the kernel
  delivers however the hub ends (a clean stop closes it; a crash or kill -9 closes it with the
  process). No pid files, no orphan left listening on the hub's port.
- It logs as the hub does (runtime/logs.py: escaped, one line per event), to the hub's log file
  when `hub serve --log` names one, else to stderr, at the hub's level.
- A clean stop closes stdin and waits STOP_TIMEOUT_S for the child to shut its broker down, then
  kills it.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hub.acl.policy import BrokerRole, UserSpec
from hub.broker import EmbeddedBroker
from runtime.logs import configure_logging, log_to_file

log = logging.getLogger("fieldpact.hub.broker")

START_TIMEOUT_S = 30.0
"""Interpreter start, amqtt's imports and the bind: a second or two on a field controller; a
loaded host takes longer."""

STOP_TIMEOUT_S = 5.0
"""amqtt's shutdown closes every session; longer than this and the child is killed."""

READY = "ready"


class BrokerProcessError(RuntimeError):
    """The broker process did not start (its exit status and last output say why)."""


class BrokerProcess:
    """EmbeddedBroker's interface, the broker running in a child process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 users: Mapping[str, UserSpec]) -> None:
        self.host, self._port, self._users = host, port, dict(users)
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def port(self) -> int:
        """The bound port. Raises RuntimeError before the broker is started."""
        if self._proc is None:
            raise RuntimeError("BrokerProcess.port: broker not started")
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def __aenter__(self) -> Self:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.broker_process", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(self._config() + b"\n")
            await proc.stdin.drain()
            async with asyncio.timeout(START_TIMEOUT_S):
                line = (await proc.stdout.readline()).decode(errors="replace").split()
            if len(line) != 2 or line[0] != READY:
                raise BrokerProcessError(f"broker process did not start (exit {await proc.wait()})")
        except BaseException:
            await _kill(proc)
            raise
        self._proc, self._port = proc, int(line[1])
        log.info("mqtt_broker_process_started host=%s port=%d pid=%d users=%d", self.host,
                 self._port, proc.pid, len(self._users))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()  # the lifeline: the child shuts its broker down and exits
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await proc.communicate()  # its stdout to the end too: no pipe is left open
        except TimeoutError:
            await _kill(proc)
        except asyncio.CancelledError:  # stopped harder: do not leave it to finish on its own
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        log.info("mqtt_broker_process_stopped port=%d status=%s", self._port, proc.returncode)

    def _config(self) -> bytes:
        users = {name: {**asdict(u), "role": u.role.value, "sites": list(u.sites)}
                 for name, u in self._users.items()}
        return json.dumps({"host": self.host, "port": self._port, "users": users,
                           "log": _log_target()}).encode()


def _log_target() -> dict[str, Any]:
    """Where and how this process logs (runtime/logs.py), for the child to log the same way: the
    file of `hub serve --log`, else stderr; the root logger's level."""
    root = logging.getLogger()
    files = [h.baseFilename for h in root.handlers if isinstance(h, logging.FileHandler)]
    return {"level": logging.getLevelName(root.level), "file": files[0] if files else None}


def _log_like_parent(target: Mapping[str, Any]) -> None:
    level = str(target.get("level") or "WARNING")
    if target.get("file"):
        log_to_file(Path(target["file"]), level)
    else:
        configure_logging(level)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.communicate()  # to the end of its pipes, closing them


def _users(doc: Mapping[str, Mapping[str, Any]]) -> dict[str, UserSpec]:
    """The logins from the config line (UserSpec validates each as it is built)."""
    return {name: UserSpec(password_hash=str(u["password_hash"]), role=BrokerRole(u["role"]),
                           site=u.get("site"), device=u.get("device"),
                           sites=tuple(str(s) for s in u.get("sites") or ()))
            for name, u in doc.items()}


async def _child() -> None:
    """The child: read the config line, run the broker, stop at end of stdin."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    doc = json.loads(await stdin.readline())
    _log_like_parent(doc.get("log") or {})
    async with EmbeddedBroker(doc["host"], int(doc["port"]), users=_users(doc["users"])) as broker:
        print(f"{READY} {broker.port}", flush=True)
        while await stdin.read(4096):
            pass  # nothing more is ever sent: only the end of file matters


if __name__ == "__main__":
    configure_logging("WARNING")  # until the config line says how the hub logs
    asyncio.run(_child())
