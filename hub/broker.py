"""The embedded MQTT broker (amqtt 0.12) with per-user authentication and topic ACL.

Policy (the same one `mosquitto_acl` renders for sites running their own broker):
- Every client authenticates with a username and password; anonymous and unknown users are refused.
- A DEVICE publishes only its own upstream channels, fp/v1/{site}/{device}/{status, journal,
  contract/result, telemetry, points/#}, and reads only its own downstream ones, {ack, contract, cmd}.
  A device cannot forge another device's journal, nor read another device's contracts.
- The HUB may publish and read anything under fp/v1/#.
- An INTEGRATION (SCADA, historian) only reads fp/v1/+/+/points/# and fp/v1/+/+/status.
- Every DEVICE and INTEGRATION also reads the hub's birth, fp/v1/_hub/status; only the HUB writes it.
- A last will is a publish made on the client's behalf later: its topic must pass the publish ACL
  at CONNECT, or the connection is refused (amqtt does not check wills itself).

`allowed` is the whole decision, pure and tested alone; the amqtt plugins are thin wrappers.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker
from amqtt.contexts import Action as AmqttAction
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from contracts.topics import HUB_STATUS, PREFIX, Channel, check_id, covers, matches

log = logging.getLogger(__name__)

# scrypt cost: n=2**14, r=8, p=1 is the RFC 7914 section 2 interactive-login setting (16 MiB, tens of
# ms); a connecting device pays it once per connect, and it runs in a thread off the broker's loop.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SALT_BYTES = 16
_NOISY_LOGGERS = ("amqtt", "transitions")


class Role(enum.StrEnum):
    """What kind of client a user is; decides its ACL."""

    HUB = "hub"
    DEVICE = "device"
    INTEGRATION = "integration"


class Action(enum.StrEnum):
    """What a client asks the broker to do with a topic. RECEIVE is a delivery to a subscriber."""

    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    RECEIVE = "receive"


@dataclass(frozen=True, kw_only=True)
class UserSpec:
    """One broker user. A DEVICE must name its site and device; others must not."""

    password_hash: str
    role: Role
    site: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.role is Role.DEVICE:
            check_id("site", self.site or "")
            check_id("device", self.device or "")
        elif self.site is not None or self.device is not None:
            raise ValueError(f"role: {self.role.value} user must not name a site or device")


# --- passwords ----------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """Salted scrypt hash as `scrypt$n$r$p$salt$hash` (base64 parts)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    parts = (str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest))
    return "$".join(("scrypt", *parts))


def check_password(password: str, password_hash: str) -> bool:
    """True if `password` produced `password_hash`. A malformed hash is simply False."""
    try:
        scheme, n, r, p, salt, digest = password_hash.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- ACL ----------------------------------------------------------------------------------------

_DEVICE_UP = (Channel.STATUS, Channel.JOURNAL, Channel.CONTRACT_RESULT, Channel.TELEMETRY)
_DEVICE_DOWN = (Channel.ACK, Channel.CONTRACT, Channel.CMD)


def publish_filters(user: UserSpec) -> tuple[str, ...]:
    """Filters a user may publish under (a topic must match one)."""
    if user.role is Role.HUB:
        return (f"{PREFIX}/#",)
    if user.role is Role.DEVICE:
        base = f"{PREFIX}/{user.site}/{user.device}"
        return (*(f"{base}/{c.value}" for c in _DEVICE_UP), f"{base}/{Channel.POINTS.value}/#")
    return ()


def read_filters(user: UserSpec) -> tuple[str, ...]:
    """Filters a user may subscribe to (a requested filter must be covered by one)."""
    if user.role is Role.HUB:
        return (f"{PREFIX}/#",)
    if user.role is Role.DEVICE:
        own = tuple(f"{PREFIX}/{user.site}/{user.device}/{c.value}" for c in _DEVICE_DOWN)
        return (*own, HUB_STATUS)
    return (f"{PREFIX}/+/+/{Channel.POINTS.value}/#", f"{PREFIX}/+/+/{Channel.STATUS.value}",
            HUB_STATUS)


def allowed(user: UserSpec, action: Action, topic: str) -> bool:
    """The ACL decision. `topic` is a filter for SUBSCRIBE, a concrete topic otherwise.

    Never raises: a malformed topic or filter is refused.
    """
    try:
        if action is Action.PUBLISH:
            return any(matches(f, topic) for f in publish_filters(user))
        if action is Action.SUBSCRIBE:
            return any(covers(f, topic) for f in read_filters(user))
        return any(matches(f, topic) for f in read_filters(user))
    except ValueError:
        return False


def mosquitto_acl(users: Mapping[str, UserSpec]) -> str:
    """The same policy as a Mosquitto `acl_file`: per-user `topic write|read` lines."""
    blocks = [_mosquitto_user_block(name, users[name]) for name in sorted(users)]
    return "# generated by fieldpact hub.broker.mosquitto_acl; do not edit by hand\n\n" + "\n".join(blocks)


def _mosquitto_user_block(name: str, user: UserSpec) -> str:
    if any(c.isspace() for c in name):
        raise ValueError(f"users.{name!r}: mosquitto user names cannot contain whitespace")
    lines = [f"user {name}"]
    lines += [f"topic write {f}" for f in publish_filters(user)]
    lines += [f"topic read {f}" for f in read_filters(user)]
    return "\n".join(lines) + "\n"


def mosquitto_password_line(username: str, password: str, *, iterations: int = 101) -> str:
    """One Mosquitto 2.x password-file line (`$7$`: PBKDF2-HMAC-SHA512, 12-byte salt).

    101 iterations is mosquitto_passwd's own default. Prefer running `mosquitto_passwd` on the
    broker host; this exists so tests and provisioning can write the file without the binary.
    """
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{username}:$7${iterations}${_b64(salt)}${_b64(digest)}"


# --- amqtt adapter ------------------------------------------------------------------------------


class AmqttAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no types
    """amqtt auth plugin: password check against `users`, and the will topic against the ACL."""

    @dataclass
    class Config:
        users: dict[str, Any] = field(default_factory=dict)

    async def authenticate(self, *, session: Session) -> bool:
        user = self.config.users.get(session.username or "")
        if user is None or session.password is None:
            log.warning("mqtt_auth_refused user=%s reason=unknown_user", session.username)
            return False
        if not await asyncio.to_thread(check_password, session.password, user.password_hash):
            log.warning("mqtt_auth_refused user=%s reason=bad_password", session.username)
            return False
        if session.will_flag and not allowed(user, Action.PUBLISH, session.will_topic or ""):
            log.warning("mqtt_auth_refused user=%s reason=will_topic topic=%s",
                        session.username, session.will_topic)
            return False
        return True


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
        self._broker: _DrainingBroker | None = None

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
        broker = _DrainingBroker(self._config())
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


class _SnapshotDict(dict):  # type: ignore[type-arg]
    """amqtt 0.12's broadcast loop iterates `_subscriptions.items()` and awaits inside the loop; a
    client (un)subscribing meanwhile raises "dictionary changed size during iteration" and that
    broadcast is lost. Iterating a snapshot delivers it to the subscribers present when it began.
    (Our delivery guarantee never rests on the broker — seq + ack — but a lost contract push costs
    a reconnect to recover.)"""

    def items(self):  # type: ignore[no-untyped-def]
        return list(super().items())

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(super().keys()))


class _DrainingBroker(Broker):  # type: ignore[misc]
    """amqtt's Broker, plus: connections still in their handshake at shutdown are closed too.

    amqtt's shutdown closes established sessions and the listener, but a connection accepted a
    moment earlier (CONNECT read, password being checked) is in no session yet and is orphaned;
    its socket then leaks. We track each connection's task and writer, and end the leftovers.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._live: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._subscriptions: dict[str, Any] = _SnapshotDict(self._subscriptions)

    async def stream_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               listener_name: str) -> None:
        task = asyncio.current_task()
        assert task is not None  # always inside the server's connection task
        self._live[task] = writer
        try:
            await super().stream_connected(reader, writer, listener_name)
        finally:
            self._live.pop(task, None)
            # amqtt 0.12 returns from some disconnect paths (a client's clean DISCONNECT among them)
            # without closing the transport; the socket then leaks until garbage collection.
            writer.close()

    async def drain(self) -> None:
        """Cancel and close connections that outlived shutdown."""
        leftovers = dict(self._live)
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        for writer in leftovers.values():
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _bound_port(broker: Broker) -> int:
    # amqtt keeps its asyncio.Server per listener in a private dict; reading it is the only way to
    # learn the port the OS chose for port 0 without a bind-close-rebind race.
    server = broker._servers["default"].instance  # noqa: SLF001
    return int(server.sockets[0].getsockname()[1])
