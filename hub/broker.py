"""The embedded MQTT broker: amqtt 0.12 (with the fixes in hub/amqtt_session.py) enforcing the
fieldpact broker policy (hub/acl/policy.py) through two thin plugins.

`allowed` is the whole ACL decision, pure and tested alone. A last will is a publish made on the
client's behalf later: its topic must pass the publish ACL at CONNECT, or the connection is refused
(amqtt does not check wills itself).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker
from amqtt.contexts import Action as AmqttAction
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from hub.acl.passwords import check_password
from hub.acl.policy import Action, UserSpec, allowed
from hub.amqtt_session import FieldpactBroker

log = logging.getLogger(__name__)

_NOISY_LOGGERS = ("amqtt", "transitions")
PASSWORD_CHECKS_AT_ONCE = 2
"""scrypt costs 16 MiB and tens of ms per check. Unbounded, a CONNECT flood naming a real login
would occupy every thread of the default executor, which the hub also uses to keep validation and
signing off its event loop; bounded, a flood costs at most this many threads and 32 MiB."""


class AmqttAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no types
    """amqtt auth plugin: password check against `users`, and the will topic against the ACL."""

    @dataclass
    class Config:
        users: dict[str, Any] = field(default_factory=dict)

    _slots: asyncio.Semaphore | None = None

    async def authenticate(self, *, session: Session) -> bool:
        user = self.config.users.get(session.username or "")
        if user is None or session.password is None:
            log.warning("mqtt_auth_refused user=%s reason=unknown_user", session.username)
            return False
        if not await self._check(session.password, user.password_hash):
            log.warning("mqtt_auth_refused user=%s reason=bad_password", session.username)
            return False
        if session.will_flag and not allowed(user, Action.PUBLISH, session.will_topic or ""):
            log.warning("mqtt_auth_refused user=%s reason=will_topic topic=%s",
                        session.username, session.will_topic)
            return False
        return True

    async def _check(self, password: str, password_hash: str) -> bool:
        if self._slots is None:  # made lazily: it must belong to the broker's running loop
            self._slots = asyncio.Semaphore(PASSWORD_CHECKS_AT_ONCE)
        async with self._slots:
            return await asyncio.to_thread(check_password, password, password_hash)


class AmqttAclPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """amqtt topic plugin: `allowed` for publish, subscribe and delivery."""

    @dataclass
    class Config:
        users: dict[str, Any] = field(default_factory=dict)

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None,
        action: AmqttAction | None = None,
    ) -> bool:
        user = self.config.users.get(session.username or "") if session else None
        if user is None or topic is None or action is None:
            return False
        ok = allowed(user, Action(action.value), topic)
        if not ok and action is not AmqttAction.RECEIVE:
            log.warning("mqtt_acl_refused user=%s action=%s topic=%s", session.username if session
                        else None, action.value, topic)
        return ok


class EmbeddedBroker:
    """An amqtt broker on `host:port` enforcing the fieldpact ACL. Async context manager.

    `port=0` binds an ephemeral port; `.port` is the port actually bound once entered.
    Raises BrokerError (amqtt's) from `__aenter__` if the port cannot be bound.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 users: Mapping[str, UserSpec]) -> None:
        self.host, self._port = host, port
        self._users = dict(users)
        self._broker: FieldpactBroker | None = None

    @property
    def port(self) -> int:
        """The bound port. Raises RuntimeError before the broker is started."""
        if self._broker is None:
            raise RuntimeError("EmbeddedBroker.port: broker not started")
        return self._port

    @property
    def url(self) -> str:
        """`mqtt://host:port` for MqttLink."""
        return f"mqtt://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        broker = FieldpactBroker(self._config(), self._users)
        await broker.start()
        self._broker = broker
        self._port = _bound_port(broker)
        log.info("mqtt_broker_started host=%s port=%d users=%d", self.host, self._port, len(self._users))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            await self._broker.drain()
            self._broker = None
            log.info("mqtt_broker_stopped port=%d", self._port)

    def _config(self) -> dict[str, Any]:
        users = {"users": self._users}
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self._port}"}},
            "plugins": {f"{__name__}.AmqttAuthPlugin": users, f"{__name__}.AmqttAclPlugin": users},
        }


def _bound_port(broker: Broker) -> int:
    # amqtt keeps its asyncio.Server per listener in a private dict; reading it is the only way to
    # learn the port the OS chose for port 0 without a bind-close-rebind race.
    server = broker._servers["default"].instance  # noqa: SLF001
    return int(server.sockets[0].getsockname()[1])
