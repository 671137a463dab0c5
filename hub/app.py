"""Assemble the hub: store, signing key, broker (embedded or external), MQTT sync, HTTP API.

Everything is opened in one AsyncExitStack inside Starlette's lifespan, so the API, the sync side
and the embedded broker start and stop together; the sync runs in one named task.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette

from contracts.schema import Contract
from contracts.signing import generate_keypair, load_private_key, sign_contract
from fieldpact.files import private_dir
from fieldpact.mqtt import MqttLink
from hub.acl.logins import HUB_USER
from hub.acl.logins import broker_users as _users
from hub.acl.policy import HUB_CLIENT_ID
from hub.api import create_app
from hub.broker import EmbeddedBroker, UserSpec, hash_password
from hub.config import BrokerMode, HubConfig
from hub.offline import OfflineManager
from hub.service import HubService
from hub.store import HubStore
from hub.sync import HubSync, MqttPublisher, wall_ms

log = logging.getLogger("fieldpact.hub")

__all__ = ["HUB_USER", "HubRuntime", "broker_users", "load_or_create_key"]


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
    """The running hub's parts. The store, key and service open at construction (the API needs
    them to be built); `running()` adds the broker, the MQTT link and the sync task."""

    def __init__(self, cfg: HubConfig, *, broker_url: str | None = None,
                 clock: Callable[[], int] = wall_ms) -> None:
        self.cfg, self.broker_url, self.clock = cfg, broker_url, clock
        self.store = HubStore.open(cfg.db_path)
        self.publisher = MqttPublisher()
        self.service = HubService(self.store, _signer(load_or_create_key(cfg.key_path)),
                                  self.publisher, clock)
        self.offline = OfflineManager(self.store, self.service, cfg.policies, clock)
        self.sync: HubSync | None = None
        self.broker: EmbeddedBroker | None = None
        self.mqtt_url: str | None = None

    def close(self) -> None:
        self.store.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HubRuntime]:
        async with contextlib.AsyncExitStack() as stack:
            url, username, password = await self._broker(stack)
            link = MqttLink(url, client_id=HUB_CLIENT_ID, username=username, password=password,
                            subscriptions=HubSync.subscriptions())
            self.publisher.link, self.mqtt_url = link, url
            self.sync = HubSync(self.store, self.offline, link,
                                silence_timeout_ms=self.cfg.silence_timeout_ms, clock=self.clock)
            task = asyncio.create_task(self.sync.run(), name="hub-sync")
            stack.push_async_callback(_cancel, task)
            await link.wait_connected(10)
            log.info("hub_ready broker=%s db=%s", url, self.cfg.db_path)
            yield self

    async def _broker(self, stack: contextlib.AsyncExitStack) -> tuple[str, str | None, str | None]:
        b = self.cfg.broker
        if self.broker_url or b.mode is BrokerMode.EXTERNAL:
            return self.broker_url or b.url or "", b.username, b.password
        password = secrets.token_urlsafe(24)  # the hub's own login, never leaves this process
        self.broker = await stack.enter_async_context(
            EmbeddedBroker(b.listen_host, b.listen_port, users=broker_users(self.cfg, password)))
        return self.broker.url, HUB_USER, password

    def app(self) -> Starlette:
        """The Starlette app; its lifespan runs the broker and the sync side."""
        runtime = self

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with runtime.running():
                yield

        return create_app(self.service, self.cfg.auth, lifespan=lifespan)


def _signer(key: Ed25519PrivateKey) -> Callable[[Contract], bytes]:
    return lambda c: sign_contract(c, key)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
