"""Shared test fixtures: real MQTT brokers (embedded amqtt, and Mosquitto if present).

Both broker fixtures yield a `BrokerEndpoint` with the same test fleet (`FLEET`): a hub, two devices
of site `s1` and a read-only integration. Log in with `endpoint.login("d1")` (username/password
keyword arguments for aiomqtt.Client) or build an MqttLink from `endpoint.url`.
"""
from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from hub.acl.policy import base_client_id
from hub.acl import mosquitto as mosquitto_export
from hub.acl.passwords import hash_password, mosquitto_hash
from hub.acl.policy import BrokerRole, UserSpec
from hub.broker import EmbeddedBroker
from tests.waiting import free_port, process_listening, stop_process

SITE = "s1"
BROKER_START_TIMEOUT_S = 10.0


@dataclass(frozen=True, kw_only=True)
class FleetUser:
    """A broker user with its clear-text password (tests only)."""

    name: str
    password: str
    role: BrokerRole
    site: str | None = None
    device: str | None = None
    sites: tuple[str, ...] = ()

    @property
    def spec(self) -> UserSpec:
        return UserSpec(password_hash=_hashed(self.password), role=self.role, site=self.site,
                        device=self.device, sites=self.sites)

    @property
    def mosquitto_spec(self) -> UserSpec:
        """The same user with a Mosquitto-compatible ($7$) hash, for the exported password file."""
        return replace(self.spec, password_hash=_mosquitto_hashed(self.password))

    def client_id(self, suffix: str | None = None) -> str:
        """A client id this login may use (hub/acl/policy.py): its base id, or base/suffix."""
        base = base_client_id(self.name, self.spec)
        return base if suffix is None else f"{base}/{suffix}"


FLEET: Mapping[str, FleetUser] = {
    u.name: u
    for u in (
        FleetUser(name="hub", password="hub-secret", role=BrokerRole.HUB),
        FleetUser(name="d1", password="d1-secret", role=BrokerRole.DEVICE, site=SITE, device="d1"),
        FleetUser(name="d2", password="d2-secret", role=BrokerRole.DEVICE, site=SITE, device="d2"),
        FleetUser(name="scada", password="scada-secret", role=BrokerRole.INTEGRATION, sites=(SITE,)),
    )
}


@functools.cache
def _mosquitto_hashed(password: str) -> str:
    return mosquitto_hash(password)


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
    kind: str = "amqtt"  # or "mosquitto"

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
    """A real Mosquitto on 127.0.0.1 with the FLEET users, configured by `export-mosquitto`'s files
    (hub/acl/mosquitto.py: ACL, password file, config snippet). Skips without a mosquitto binary."""
    with running_mosquitto(tmp_path) as endpoint:
        yield endpoint


@pytest.fixture(params=["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
async def any_broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BrokerEndpoint]:
    """Each test using it runs twice: on the embedded amqtt broker and on a real Mosquitto."""
    if request.param == "amqtt":
        async with EmbeddedBroker("127.0.0.1", 0, users=fleet_specs()) as broker:
            yield BrokerEndpoint(host=broker.host, port=broker.port, users=FLEET, kind="amqtt")
    else:
        with running_mosquitto(tmp_path) as endpoint:
            yield endpoint


def mosquitto_binary() -> str:
    """The mosquitto executable; skips the calling test when there is none."""
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        pytest.skip("mosquitto binary not found on PATH (apt-get install mosquitto)")
    return binary


@contextlib.contextmanager
def running_mosquitto(tmp_path: Path, users: Mapping[str, FleetUser] = FLEET, *,
                      run_as: str = "root") -> Iterator[BrokerEndpoint]:
    """Mosquitto with `users`, from the exported files in tmp_path/mosquitto (see the fixture)."""
    binary = mosquitto_binary()
    port = free_port()
    config = write_mosquitto_config(tmp_path, port, users, run_as=run_as)
    with start_mosquitto(binary, config, port, tmp_path / "mosquitto.log"):
        yield BrokerEndpoint(host="127.0.0.1", port=port, users=users, kind="mosquitto")


def write_mosquitto_config(tmp_path: Path, port: int, users: Mapping[str, FleetUser] = FLEET, *,
                           run_as: str = "root") -> Path:
    """`export-mosquitto`'s files for `users` in tmp_path/mosquitto, plus a mosquitto.conf listening
    on 127.0.0.1:`port` without persistence; returns the config's path."""
    out = tmp_path / "mosquitto"
    specs = {name: u.mosquitto_spec for name, u in users.items()}
    mosquitto_export.write(mosquitto_export.render(specs, out, f"{port} 127.0.0.1"), out,
                           group=None if run_as == "root" else run_as)
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        (out / mosquitto_export.CONF_NAME).read_text() + "persistence false\n"
        # As root in CI keep root, else mosquitto drops to its own user and cannot read tmp.
        + f"user {run_as}\nlog_dest stderr\nlog_type error\nlog_type warning\n")
    return config


@contextlib.contextmanager
def start_mosquitto(binary: str, config: Path, port: int, log_path: Path) -> Iterator[None]:
    """Run `binary -c config` until the block ends; raises if it does not listen on `port`."""
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                                stderr=log_file)
    try:
        process_listening(proc, port, log_path, BROKER_START_TIMEOUT_S)
        yield
    finally:
        stop_process(proc)
