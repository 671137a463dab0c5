"""What bench.sync's phases share: the one device, the hub's config and clock, a device's MQTT
client and birth, and the figures' plumbing (a thread's CPU time, where the device stands).

Rules: the hub runs with its embedded broker on port 0 in a temp dir (SQLite hub db), `d1` logs in
with its own password, which is also the admin API token; waits that time a figure poll every
POLL_S.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from contracts.topics import Channel, topic
from contracts.wire import Birth
from hub.app import HubRuntime
from hub.auth import AuthConfig, ApiRole, Token, hash_token
from hub.acl.passwords import hash_password
from hub.config import BrokerConfig, DeviceCredential, HubConfig
from hub.store import NotFound
from transport.mqtt import SOCKET_OPTIONS

BATCH = 500
"""agent/config.py DEFAULT_BATCH_MAX: entries per JournalBatch message."""
SITE, DEVICE = "s1", "d1"
DAY_MS = 24 * 3600 * 1000
EXAMPLE = Path(__file__).parents[1] / "contracts" / "examples" / "tank-fill.yaml"
POLL_S = 0.005
"""Some figures are timed by these waits: poll finer than the tests' default (50 ms)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


OWN_PROCESS = [True]
"""The embedded broker in its own process (the default), or on the hub's MQTT thread
(--inproc-broker, as before) for the ingest and reconcile runs."""

FLEET = [1000]
"""How many devices the fleet run registers (--devices)."""


def fleet_ids(devices: int) -> list[str]:
    return [f"dev-{i:04d}" for i in range(devices)]


@dataclass
class Clock:
    """The hub's clock: wall time plus an offset the bench moves."""

    offset_ms: int = 0

    def __call__(self) -> int:
        return now_ms() + self.offset_ms


def hub_config(work: Path, secret: str, **broker: Any) -> HubConfig:
    """Hub config in `work`; `secret` is both d1's MQTT password and the API token."""
    token = Token(name="bench", sha256=hash_token(secret), role=ApiRole.ADMIN)
    return HubConfig(db_path=work / "hub.db", key_path=work / "keys" / "hub.key",
                     broker=BrokerConfig(**({"listen_port": 0, "own_process": OWN_PROCESS[0]}
                                            | broker)),
                     auth=AuthConfig(tokens=(token,)),
                     devices=(DeviceCredential(id=DEVICE, site=SITE,
                                               password_hash=hash_password(secret)),))


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


@contextlib.asynccontextmanager
async def device_client(hub: HubRuntime, password: str) -> AsyncIterator[aiomqtt.Client]:
    assert hub.mqtt_url is not None
    host, port = host_port(hub.mqtt_url)
    async with aiomqtt.Client(host, port, identifier=f"fp-agent-{DEVICE}/bench", username=DEVICE,
                              password=password, max_queued_outgoing_messages=0,
                              socket_options=SOCKET_OPTIONS) as client:
        yield client


async def birth(client: aiomqtt.Client, last_seq: int) -> None:
    b = Birth(device=DEVICE, site=SITE, boot_id=secrets.token_hex(8), contract="tank-fill",
              version=3, last_seq=last_seq)
    await client.publish(topic(SITE, DEVICE, Channel.STATUS), b.to_bytes(), qos=1, retain=True)


def thread_cpu_s(name: str) -> float:
    """CPU seconds (user + system) of this process's thread `name` so far (/proc, Linux)."""
    thread = next(t for t in threading.enumerate() if t.name == name)
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def known(hub: HubRuntime) -> bool:
    try:
        hub.store.devices.get(DEVICE)
    except NotFound:
        return False
    return True


def where(hub: HubRuntime) -> str:
    d = hub.store.devices.get(DEVICE)
    return f"device {d.state.value}, acked {d.acked_seq}, last_seq {d.last_seq}"
