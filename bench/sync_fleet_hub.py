"""bench.sync phase 3's hub and broker: the hub with its FLEET devices registered, on the embedded
amqtt (in its own process or on the hub's MQTT thread), a Mosquitto process with our rendered ACL
and passwords, or amqtt alone in a process of its own.

Rules: only registered devices exist (hub/registry.py), so every fleet device is registered before
the hub starts; the load generator logs in with a hub-role login of its own ("loadgen"); a broker
child process counts as started once it listens on its port, and is terminated after.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.sync_hub import FLEET, POLL_S, SITE, fleet_ids, hub_config, now_ms
from hub.app import HUB_USER, HubRuntime, broker_users
from hub.acl.mosquitto import mosquitto_acl
from hub.acl.passwords import hash_password, mosquitto_password_line
from hub.acl.policy import BrokerRole, UserSpec
from hub.broker import EmbeddedBroker
from hub.broker_process import BrokerProcess
from hub.config import BrokerMode, HubConfig
from tests.waiting import eventually, free_port, listening

class FleetHub(HubRuntime):
    """The hub with its embedded broker, as `hub serve` runs it (on the MQTT side's own loop and
    thread), plus a hub-role login for the load generator on that broker."""

    def __init__(self, cfg: HubConfig, loadgen_password: str) -> None:
        super().__init__(cfg)
        self._loadgen_password = loadgen_password

    async def _broker(self, stack: contextlib.AsyncExitStack) -> tuple[str, str | None, str | None]:
        b, password = self.cfg.broker, secrets.token_urlsafe(24)
        users = broker_users(self.cfg, password) | {"loadgen": UserSpec(
            password_hash=hash_password(self._loadgen_password), role=BrokerRole.HUB, site=None,
            device=None)}
        broker = (BrokerProcess(b.listen_host, b.listen_port, users=users) if b.own_process
                  else EmbeddedBroker(b.listen_host, b.listen_port, users=users))
        self.broker = await stack.enter_async_context(broker)
        return broker.url, HUB_USER, password


@contextlib.asynccontextmanager
async def fleet_hub(kind: str, tmp: Path, password: str) -> AsyncIterator[HubRuntime]:
    """The hub for the fleet run (not started), its FLEET devices registered (only registered
    devices exist: hub/registry.py): with its embedded amqtt, or in external mode on a Mosquitto
    process with our rendered ACL and passwords."""
    if kind in ("amqtt", "amqtt-inproc"):
        hub: HubRuntime = FleetHub(hub_config(tmp, password, own_process=kind == "amqtt"),
                                   password)
        try:
            yield _registered(hub)
        finally:
            hub.close()
        return
    broker = mosquitto(tmp, password) if kind == "mosquitto" else amqtt_process(password)
    async with broker as url:
        hub = HubRuntime(hub_config(tmp, password, mode=BrokerMode.EXTERNAL, url=url,
                                    username="hub", password=password))
        try:
            yield _registered(hub)
        finally:
            hub.close()


def _registered(hub: HubRuntime) -> HubRuntime:
    """The fleet's devices added as an admin would (the API's registrations table), then the
    registry re-read once."""
    with hub.store.tx():
        for d in fleet_ids(FLEET[0]):
            hub.store.registry.add(d, SITE, {}, now_ms(), "bench")
            hub.store.devices.ensure(d, SITE, now_ms(), {})
    hub.registry._reload()  # one read for all of them (register() re-reads after each)
    return hub


def _fleet_users(password: str) -> dict[str, UserSpec]:
    return {name: UserSpec(password_hash=hash_password(password), role=BrokerRole.HUB, site=None,
                           device=None) for name in ("hub", "loadgen")}


@contextlib.asynccontextmanager
async def amqtt_process(password: str) -> AsyncIterator[str]:
    """The embedded amqtt broker in a process of its own (its own interpreter lock), to measure
    what taking it out of the hub's process would give."""
    port = free_port()
    async with _listening_process([sys.executable, "-m", "bench.sync", "--amqtt-broker", str(port)],
                                  port, 30, env={**os.environ, "BENCH_MQTT_PASSWORD": password}):
        yield f"mqtt://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def _listening_process(argv: list[str], port: int, timeout_s: float,
                             **kw: Any) -> AsyncIterator[None]:
    """`argv` as a child process, once it listens on 127.0.0.1:`port`; terminated after."""
    proc = await asyncio.create_subprocess_exec(*argv, **kw)
    try:
        await eventually(lambda: listening(port), timeout_s, f"{argv[0]} listening on {port}",
                         every_s=POLL_S)
        yield
    finally:
        proc.terminate()
        await proc.wait()


async def run_amqtt(port: int) -> None:
    users = _fleet_users(os.environ["BENCH_MQTT_PASSWORD"])
    async with EmbeddedBroker("127.0.0.1", port, users=users):
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def mosquitto(tmp: Path, password: str) -> AsyncIterator[str]:
    users = _fleet_users(password)
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if binary is None:
        raise SystemExit("--broker mosquitto: no mosquitto binary (apt-get install mosquitto)")
    port = free_port()
    (tmp / "passwd").write_text("".join(mosquitto_password_line(u, password) + "\n" for u in users))
    (tmp / "acl").write_text(mosquitto_acl(users))
    (tmp / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                                f"password_file {tmp / 'passwd'}\nacl_file {tmp / 'acl'}\n"
                                "persistence false\nuser root\nmax_queued_messages 100000\n")
    for f in ("passwd", "acl"):
        os.chmod(tmp / f, 0o600)
    async with _listening_process([binary, "-c", str(tmp / "m.conf")], port, 10,
                                  stdout=asyncio.subprocess.DEVNULL,
                                  stderr=asyncio.subprocess.DEVNULL):
        yield f"mqtt://127.0.0.1:{port}"
