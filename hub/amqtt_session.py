"""amqtt 0.12's Broker, fixed where its session handling breaks the fieldpact broker policy.

Each fix has a regression test in tests/hub/test_hostile_broker.py:
- amqtt deletes an existing session (and its subscriptions) on a clean-session CONNECT, and
  registers the newcomer under that client id, *before* checking credentials: a CONNECT with
  someone's client id and no password left the victim connected but deaf. Here a CONNECT is
  admitted (password, will topic, client id bound to the login, id not held by another login) before
  any session state is looked at; a refused CONNECT gets a CONNACK refusal and touches nothing.
- amqtt delivers, at connect, retained messages matching *anyone's* subscriptions, and retained
  messages at subscribe time without a read check. Here retained delivery goes only to the
  subscriber's own filters, through its read ACL.
- amqtt waits forever for a CONNECT: here it must arrive within CONNECT_TIMEOUT_S, and the
  keepalive is stretched to 1.5x (MQTT 3.1.2.10) for the handler to enforce. What one connection
  may do once admitted (packet size, keepalive, QoS 2 in flight, queued deliveries) is capped in
  hub/amqtt_connection.py. amqtt also lets one client hold any number of filters (each matched
  against every message), and keeps every retained message forever: both are capped per client
  or login (MAX_SUBSCRIPTIONS, MAX_RETAINED_TOPICS/BYTES).
- Persistent sessions (clean_session=0) are refused: fieldpact's clients never use them (delivery
  rests on journal seq + ack), and amqtt's takeover of a persistent session shares one Session
  object between the old and the new connection, and queues messages for it without bound.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from amqtt.broker import Broker
from amqtt.contexts import Action as AmqttAction
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import BAD_USERNAME_PASSWORD, IDENTIFIER_REJECTED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session

from hub.acl.policy import MAX_PACKET_BYTES, BrokerRole, UserSpec, client_id_allowed
from hub.amqtt_connection import CappedReader, CoalescingWriter, ConnectionHandler

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
"""A connection that has not sent its CONNECT by then is closed (amqtt waits forever)."""
MAX_SUBSCRIPTIONS = 64
"""Distinct filters one non-hub client may hold. An integration's `fp/v1/{site}/+/points/#` covers
endless narrower filters, and amqtt matches every message against every filter held."""
MAX_RETAINED_TOPICS = 2_100
"""Retained topics one non-hub login may hold: a contract's 2,048 points plus its status, with
margin. amqtt keeps every retained message forever, so a device publishing retained to endless
`points/<random>` topics would otherwise grow the broker without bound."""
MAX_RETAINED_BYTES = 8 * 1024 * 1024
"""Retained payload bytes one non-hub login may hold (points are small JSON, a birth < 1 kB)."""
TAKEOVER_TIMEOUT_S = 5.0
"""How long closing a replaced connection may take before the new one proceeds anyway."""
_LOGIN = "fieldpact.login"      # Session.attributes keys (amqtt reserves them for extensions)
_ADMITTED = "fieldpact.admitted"
_ASSIGNED_ID = re.compile(r"amqtt/[A-Za-z0-9]{16}")
"""What amqtt assigns to an empty client id (secrets-random: unguessable). A client could send such an
id itself; it still cannot take one held by another login's connected session."""


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


class _Refusal(NamedTuple):
    code: int     # CONNACK return code (MQTT 3.1.1 section 3.2.2.3)
    reason: str


class FieldpactBroker(Broker):  # type: ignore[misc]
    """amqtt's Broker with admission before session state, ACL-checked retained delivery, the
    limits above, and: connections still in their handshake at shutdown are closed too.

    amqtt's shutdown closes established sessions and the listener, but a connection accepted a
    moment earlier (CONNECT read, password being checked) is in no session yet and is orphaned;
    its socket then leaks. We track each connection's task and writer, and end the leftovers.
    """

    def __init__(self, config: dict[str, Any], users: Mapping[str, UserSpec]) -> None:
        super().__init__(config)
        self._users = dict(users)
        self._live: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._subscriptions: dict[str, Any] = _SnapshotDict(self._subscriptions)
        self._retained_by: dict[str, dict[str, int]] = {}  # login -> retained topic -> bytes

    async def stream_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               listener_name: str) -> None:
        task = asyncio.current_task()
        assert task is not None  # always inside the server's connection task
        self._live[task] = writer
        try:
            await self._client_connected(listener_name, CappedReader(reader, MAX_PACKET_BYTES),
                                         CoalescingWriter(writer))
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

    # -- admission: replaces amqtt's _initialize_client_session --------------------------------

    async def _initialize_client_session(self, reader: Any, writer: Any, remote_address: str,
                                         remote_port: int) -> tuple[BrokerProtocolHandler, Session]:
        handler, session = await self._read_connect(reader, writer)
        refusal = await self._admit(session)
        if refusal is not None:
            await _refuse(writer, refusal.code)
            log.warning("mqtt_connect_refused user=%s client_id=%s reason=%s peer=%s",
                        session.username, session.client_id, refusal.reason, remote_address)
            raise AMQTTError(f"CONNECT refused: {refusal.reason}")
        await self._replace_own_session(session)
        session.parent = 0  # CONNACK "session present" = 0: every session here is clean
        if session.keep_alive > 0:  # MQTT 3.1.2.10: disconnect after 1.5x the keepalive
            session.keep_alive += math.ceil(session.keep_alive / 2)
        return handler, session

    async def _read_connect(self, reader: Any, writer: Any) -> tuple[BrokerProtocolHandler, Session]:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                handler, session = await ConnectionHandler.init_from_connect(reader, writer,
                                                                    self.plugins_manager)
                return handler, session
        except TimeoutError:
            await writer.close()
            raise AMQTTError(f"no CONNECT within {CONNECT_TIMEOUT_S:g} s") from None
        except MQTTError:
            await writer.close()
            raise
        except NoDataError as exc:
            raise AMQTTError(exc) from exc

    async def _admit(self, session: Session) -> _Refusal | None:
        """Every check, credentials first; reads session state only after they pass."""
        if not session.clean_session:
            return _Refusal(IDENTIFIER_REJECTED, "persistent_session")
        if not await super()._authenticate(session, None):
            return _Refusal(BAD_USERNAME_PASSWORD, "credentials")
        login = session.username or ""
        if not (_ASSIGNED_ID.fullmatch(session.client_id or "")
                or client_id_allowed(login, self._users[login], session.client_id or "")):
            return _Refusal(IDENTIFIER_REJECTED, "client_id_not_this_login")
        # No await from here until amqtt registers the session (unless the same login's old
        # connection is being closed): two logins racing for one id cannot both pass this check.
        held = self._sessions.get(session.client_id)
        if held is not None and held[0].transitions.is_connected() \
                and held[0].attributes.get(_LOGIN) != login:
            return _Refusal(IDENTIFIER_REJECTED, "client_id_held_by_another_login")
        session.attributes[_LOGIN] = login
        session.attributes[_ADMITTED] = True
        return None

    async def _replace_own_session(self, session: Session) -> None:
        """The same login connecting again under its id (a reconnect whose old TCP connection is
        half-open): close the old connection, which amqtt would leave running but deaf."""
        held = self._sessions.get(session.client_id)
        if held is not None and held[0].transitions.is_connected():
            old, old_handler = held
            old.will_flag = False  # the client is back, not offline: its old will would lie
            log.info("mqtt_session_replaced client_id=%s user=%s", session.client_id,
                     session.username)
            if isinstance(old_handler, ConnectionHandler):
                old_handler.abort()  # its peer is likely gone: do not wait for a drain
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TAKEOVER_TIMEOUT_S):
                    await old_handler.handle_connection_closed()
                    await old_handler.stop()
        await self._delete_session(session.client_id)

    async def _authenticate(self, session: Session, _listener: Any) -> bool:
        # Called by amqtt after _initialize_client_session; the decision was made there.
        return bool(session.attributes.pop(_ADMITTED, False))

    # -- retained store, subscriptions, retained delivery -------------------------------------

    async def retain_message(self, source_session: Session | None, topic_name: str | None,
                             data: bytes | bytearray | None, qos: int | None = None) -> None:
        login = source_session.username if source_session is not None else None
        user = self._users.get(login or "")
        if user is None or user.role is BrokerRole.HUB or topic_name is None:
            await super().retain_message(source_session, topic_name, data, qos)
            for held_by in self._retained_by.values():  # the topic is no longer theirs
                held_by.pop(topic_name or "", None)
            return
        held = self._retained_by.setdefault(login or "", {})
        if data and topic_name not in held and (len(held) >= MAX_RETAINED_TOPICS or
                                                sum(held.values()) + len(data) > MAX_RETAINED_BYTES):
            log.warning("mqtt_retain_refused reason=budget user=%s topic=%s topics=%d",
                        login, topic_name, len(held))
            return  # delivered live, just not kept
        await super().retain_message(source_session, topic_name, data, qos)
        if data:
            held[topic_name] = len(data)
        else:
            held.pop(topic_name, None)

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        flt = subscription[0]
        user = self._users.get(session.username or "")
        held = [f for f, subs in self._subscriptions.items() if any(s is session for s, _ in subs)]
        if user is not None and user.role is not BrokerRole.HUB and flt not in held \
                and len(held) >= MAX_SUBSCRIPTIONS:
            log.warning("mqtt_subscribe_refused reason=too_many client_id=%s limit=%d",
                        session.client_id, MAX_SUBSCRIPTIONS)
            return 0x80  # SUBACK failure (MQTT 3.1.1 section 3.9.3)
        result: int = await super().add_subscription(subscription, session)
        return result

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                          session: Session) -> None:
        flt, qos = subscription
        handler = self._get_handler(session)
        # At connect amqtt offers every filter anyone subscribed to: only the session's own count.
        if handler is None or not any(s is session for s, _ in self._subscriptions.get(flt, ())):
            return
        tasks = []
        for topic, retained in list(self._retained_messages.items()):
            if self._matches(topic, flt) and await self._topic_filtering(session, topic,
                                                                        AmqttAction.RECEIVE):
                tasks.append(asyncio.ensure_future(handler.mqtt_publish(
                    retained.topic, retained.data, min(qos, retained.qos or qos), retain=True)))
        if tasks:
            await asyncio.wait(tasks)


async def _refuse(writer: Any, code: int) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        await ConnackPacket.build(0, code).to_stream(writer)
    await writer.close()
