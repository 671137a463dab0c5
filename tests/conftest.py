"""Shared test fixtures: free ports and real MQTT brokers (embedded amqtt, and Mosquitto if present).

Both broker fixtures yield a `BrokerEndpoint` with the same test fleet (`FLEET`): a hub, two devices
of site `s1` and a read-only integration. Log in with `endpoint.login("d1")` (username/password
keyword arguments for aiomqtt.Client) or build an MqttLink from `endpoint.url`.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.acl.policy import base_client_id
from hub.broker import (
    EmbeddedBroker,
    Role,
    UserSpec,
    hash_password,
    mosquitto_acl,
    mosquitto_password_line,
)

SITE = "s1"
BROKER_START_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral TCP port that was free a moment ago (bind to 0, read, close).

    Only for servers that cannot bind port 0 themselves (mosquitto); prefer port 0 otherwise.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, kw_only=True)
class FleetUser:
    """A broker user with its clear-text password (tests only)."""

    name: str
    password: str
    role: Role
    site: str | None = None
    device: str | None = None
    sites: tuple[str, ...] = ()

    @property
    def spec(self) -> UserSpec:
        return UserSpec(password_hash=_hashed(self.password), role=self.role, site=self.site,
                        device=self.device, sites=self.sites)

    def client_id(self, suffix: str | None = None) -> str:
        """A client id this login may use (hub/acl/policy.py): its base id, or base/suffix."""
        base = base_client_id(self.name, self.spec)
        return base if suffix is None else f"{base}/{suffix}"


FLEET: Mapping[str, FleetUser] = {
    u.name: u
    for u in (
        FleetUser(name="hub", password="hub-secret", role=Role.HUB),
        FleetUser(name="d1", password="d1-secret", role=Role.DEVICE, site=SITE, device="d1"),
        FleetUser(name="d2", password="d2-secret", role=Role.DEVICE, site=SITE, device="d2"),
        FleetUser(name="scada", password="scada-secret", role=Role.INTEGRATION, sites=(SITE,)),
    )
}


@functools.cache
def _hashed(password: str) -> str:
    # scrypt costs tens of ms; hash each test password once per session.
    return hash_password(password)


@dataclass(frozen=True, kw_only=True)
class BrokerEndpoint:
    """A running broker: where it listens and who may log in."""

    host: str
    port: int
    users: Mapping[str, FleetUser]

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def login(self, name: str) -> dict[str, str]:
        """`username=`/`password=` keyword arguments for user `name`."""
        return {"username": name, "password": self.users[name].password}


def fleet_specs(users: Mapping[str, FleetUser] = FLEET) -> dict[str, UserSpec]:
    return {name: user.spec for name, user in users.items()}


@pytest.fixture
async def amqtt_broker() -> AsyncIterator[BrokerEndpoint]:
    """An EmbeddedBroker (amqtt) on 127.0.0.1, ephemeral port, with the FLEET users."""
    async with EmbeddedBroker("127.0.0.1", 0, users=fleet_specs()) as broker:
        yield BrokerEndpoint(host=broker.host, port=broker.port, users=FLEET)


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[BrokerEndpoint]:
    """A real Mosquitto on 127.0.0.1 with the FLEET users and the rendered ACL.

    Skips when no `mosquitto` binary is found.
    """
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        pytest.skip("mosquitto binary not found on PATH (apt-get install mosquitto)")
    port = free_port()
    config = _write_mosquitto_files(tmp_path, port)
    log_path = tmp_path / "mosquitto.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                                stderr=log_file)
    try:
        _wait_listening("127.0.0.1", port, proc, log_path)
        yield BrokerEndpoint(host="127.0.0.1", port=port, users=FLEET)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _write_mosquitto_files(tmp_path: Path, port: int) -> Path:
    passwd, acl, config = tmp_path / "passwd", tmp_path / "acl", tmp_path / "mosquitto.conf"
    passwd.write_text("".join(mosquitto_password_line(u.name, u.password) + "\n"
                              for u in FLEET.values()))
    acl.write_text(mosquitto_acl(fleet_specs()))
    for path in (passwd, acl):
        os.chmod(path, 0o600)  # mosquitto 2.x warns about world-readable credential files
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous false\n"
        f"password_file {passwd}\n"
        f"acl_file {acl}\n"
        "persistence false\n"
        # Running as root in CI: keep root, or mosquitto drops to its own user and cannot read tmp.
        "user root\n"
        "log_dest stderr\n"
        "log_type error\nlog_type warning\n"
    )
    return config


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + BROKER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited {proc.returncode}: {log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.02)  # polling interval of a bounded wait, not a settle delay
    raise TimeoutError(f"mosquitto not listening on {host}:{port} after {BROKER_START_TIMEOUT_S}s")
