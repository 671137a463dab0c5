"""Assemble the hub: store, signing key, broker (embedded or external), MQTT sync, HTTP API.

Two sides, started and stopped together in Starlette's lifespan:
- the API side (the caller's thread and loop): `store`, `service` and `publisher`, used by the
  HTTP API. `publisher` hands publishes to the MQTT side's loop with a bounded wait.
- the MQTT side (hub/loop_thread.py: its own thread and event loop): the embedded broker (by
  default in a child process of its own that dies with the hub: hub/broker_process.py), the
  MqttLink, HubSync and a HubService/OfflineManager of its own over its own store connection (one
  SQLite connection per thread; WAL lets the API read while the sync side writes). Nothing else
  touches those objects. A failure there is logged at once, makes the API's publishes fail with
  LinkDown naming it, and is re-raised when the hub stops.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette

from contracts.schema import Contract
from contracts.signing import generate_keypair, load_private_key, sign_contract
from runtime.files import private_dir
from transport.mqtt import MqttLink
from hub.acl.logins import HUB_USER
from hub.acl.logins import broker_users as _users
from hub.acl.passwords import hash_password
from hub.acl.policy import HUB_CLIENT_ID, UserSpec
from hub import pauses
from hub.api import create_app
from hub.broker import EmbeddedBroker
from hub.broker_process import BrokerProcess
from hub.config import BrokerMode, HubConfig
from hub.offline import OfflineManager
from hub.registry import DeviceRegistry
from hub.service import HubService
from hub.store import HubStore
from hub.loop_thread import LoopThread
from hub.sync import HubSync, MqttPublisher, wall_ms

log = logging.getLogger("fieldpact.hub")

__all__ = ["HUB_USER", "HubRuntime", "broker_users", "load_or_create_key"]

MQTT_START_TIMEOUT_S = 30.0
"""Broker start, connect and subscribe; generous for a loaded host (scrypt logins, imports)."""
SWITCH_INTERVAL_S = 0.001
"""The interpreter's thread switch interval while the MQTT side runs (default 5 ms). The API's
thread gives the lock up at every SQLite call and socket write, and waits up to one interval to
get it back from a busy MQTT thread; 1 ms shortens that wait (bench/sync.py fleet, Mosquitto,
same loaded window: GET /api/devices/{id} p99 30-40 -> 25-28 ms, telemetry 912-945 -> 1,000+/s)."""
MQTT_STOP_TIMEOUT_S = 30.0
"""Cancelling the MQTT side: in-flight publishes time out within 5 s, and the embedded broker
closing 1,000 sessions took seconds on a loaded host."""


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The hub's Ed25519 signing key; generated (with its .pub beside it) on first start."""
    if not path.exists():
        private_dir(path.parent)
        key, pub = generate_keypair(path.parent)
        if key != path:
            key.rename(path)
            pub.rename(path.with_suffix(".pub"))
        log.warning("hub_key_generated path=%s public=%s", path, path.with_suffix(".pub"))
    return load_private_key(path)


def broker_users(cfg: HubConfig, hub_password: str) -> dict[str, UserSpec]:
    """The embedded broker's logins: the hub (with this start's random password), devices and
    integrations from `cfg`."""
    return _users(cfg, hash_password(hub_password))


class HubRuntime:
    """The running hub's parts. The API side (store, key, service, publisher) opens at
    construction: the API needs it to be built. `running()` starts the MQTT side in its thread.
    `offline` is an OfflineManager on the API side's store, for in-process use without the MQTT
    side (tools, tests); the MQTT side has its own."""

    def __init__(self, cfg: HubConfig, *, broker_url: str | None = None,
                 clock: Callable[[], int] = wall_ms) -> None:
        self.cfg, self.broker_url, self.clock = cfg, broker_url, clock
        self.store = HubStore.open(cfg.db_path)
        self._signer = _signer(load_or_create_key(cfg.key_path))
        self.publisher = MqttPublisher()
        self.registry = DeviceRegistry(self.store, cfg.devices,
                                       require_signed_journals=cfg.require_signed_journals)
        self.service = HubService(self.store, self._signer, self.publisher, clock,
                                  registry=self.registry)
        self.offline = OfflineManager(self.store, self.service, cfg.policies, clock, cfg.retry)
        self.sync: HubSync | None = None  # the MQTT side's, set in its thread
        self.broker: EmbeddedBroker | BrokerProcess | None = None
        self.mqtt_url: str | None = None
        self.mqtt_side: LoopThread | None = None

    def close(self) -> None:
        self.store.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HubRuntime]:
        """The MQTT side running in its own thread while the block runs. Raises what failed
        there, on start (not ready) or on exit (failed while running)."""
        side = self.mqtt_side = LoopThread("hub-mqtt")
        interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:
            await side.start(self._mqtt_side, MQTT_START_TIMEOUT_S)
            pauses.settle()  # both sides are up: what lives now lives as long as the process
            log.info("hub_ready broker=%s db=%s", self.mqtt_url, self.cfg.db_path)
            try:
                yield self
            finally:
                self.publisher.attach(None)
                await side.stop(MQTT_STOP_TIMEOUT_S)
        finally:
            sys.setswitchinterval(interval)

    async def _mqtt_side(self, ready: Callable[[], None]) -> None:
        """The MQTT side, on its own loop: its store connection, the broker, link and sync."""
        with HubStore.open(self.cfg.db_path) as store:
            async with contextlib.AsyncExitStack() as stack:
                url, username, password = await self._broker(stack)
                link = MqttLink(url, client_id=HUB_CLIENT_ID, username=username,
                                password=password, subscriptions=HubSync.subscriptions())
                publisher = MqttPublisher(link)
                # One registry for both sides: its lookups are in memory (no store calls), and
                # only the API's admin routes change it.
                service = HubService(store, self._signer, publisher, self.clock,
                                     registry=self.registry)
                offline = OfflineManager(store, service, self.cfg.policies, self.clock,
                                         self.cfg.retry)
                sync = HubSync(store, offline, link, silence_timeout_ms=self.cfg.silence_timeout_ms,
                               clock=self.clock, registry=self.registry)
                self.service.live = sync.live  # the API reads it (dict reads, never writes)
                self.service.live_contracts = sync.live_contracts  # each contract's, as well
                self.service.remote_errors = sync.remote_errors  # the API's metrics read it
                publisher.before_publish = sync.commit_now
                self.sync, self.mqtt_url = sync, url
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(sync.run(), name="hub-sync")
                        await link.wait_connected(10)
                        self.publisher.attach(link, asyncio.get_running_loop())
                        ready()
                except asyncio.CancelledError:
                    self.publisher.attach(None)
                    raise
                except BaseException as exc:  # the API's publishes and /health say why from now on
                    why = f"stopped: {_leaf_errors(exc)}"[:200]
                    self.publisher.attach(None, why=why)
                    self.service.mqtt_failure = why
                    raise

    async def _broker(self, stack: contextlib.AsyncExitStack) -> tuple[str, str | None, str | None]:
        b = self.cfg.broker
        if self.broker_url or b.mode is BrokerMode.EXTERNAL:
            return self.broker_url or b.url or "", b.username, b.password
        password = secrets.token_urlsafe(24)  # the hub's own login: only its hash leaves us
        users = broker_users(self.cfg, password)
        broker = (BrokerProcess(b.listen_host, b.listen_port, users=users) if b.own_process
                  else EmbeddedBroker(b.listen_host, b.listen_port, users=users))
        self.broker = await stack.enter_async_context(broker)
        return broker.url, HUB_USER, password

    def app(self) -> Starlette:
        """The Starlette app; its lifespan runs the broker and the sync side."""
        runtime = self

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with runtime.running():
                yield

        return create_app(self.service, self.cfg.auth, lifespan=lifespan,
                          silence_timeout_ms=self.cfg.silence_timeout_ms,
                          drift_alarm_after_ms=self.cfg.drift_alarm_ms)


def _signer(key: Ed25519PrivateKey) -> Callable[[Contract], bytes]:
    return lambda c: sign_contract(c, key)


def _leaf_errors(exc: BaseException) -> str:
    """`Type: message` of what really failed, looking inside TaskGroup exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_leaf_errors(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"
