"""One reconnecting MQTT link, used by the agent and the hub alike.

Why this exists: aiomqtt 2.x connects once and raises on disconnect; it has no reconnect of its own
(DESIGN "Known pitfalls"). `MqttLink.run` owns the loop: connect, subscribe, dispatch, and on any
loss back off (exponential, with jitter so a restarted hub is not hit by the whole fleet at once)
and connect again, forever, until cancelled. Half-open links are found by MQTT keepalive (paho
pings every `keepalive_s` and drops the link when no PINGRESP comes back).

Subscriptions are never assumed to survive: every session is a new clean-session client that
subscribes to all of them before `connected` is set and `on_connect` runs (aiomqtt 2.x restores
nothing, and a restarted broker without persistence has forgotten every subscription).
`will` and `on_connect` may also be set by the part that owns the link's presence (the hub's sync
side sets its birth and last will) before `run()`; each new session uses the current values.

A broker can also forget a live client's subscriptions without dropping the connection (amqtt
0.12 does on a session take-over; a wedged client socket looks the same). With a `probe` set, the
link proves its subscriptions end to end: it publishes to the probe topic, which it subscribes
to, every `every_s`, and a session that receives nothing at all — not even its own probe — for
`PROBE_MISSES` periods is ended as deaf and reconnected (so re-subscribed).

A part that sees deafness by its own evidence (the agent: acks that stopped coming while its
journal is outstanding) calls `reconnect(reason)`: the session ends at once and the usual loop
connects again, so re-subscribes.

The link is not a queue: `publish` raises LinkDown when the link is down or the broker does not
confirm in time. Callers decide; the agent's journal is the durable queue (invariant 5).
"""
from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

import aiomqtt

from transport.cancel import raise_if_cancelled
from transport.backoff import Backoff

log = logging.getLogger("fieldpact.mqtt")  # the name operators grep for, kept across the move

MQTT_DEFAULT_PORT = 1883
"""IANA-registered port for MQTT over plain TCP (MQTT 3.1.1 section 4.2)."""

SOCKET_OPTIONS = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""Nagle's algorithm off (paho leaves it on; asyncio's own transports turn it off). With it on,
the tail of a large publish (a 500-entry journal batch, ~44 kB) that a non-blocking send did not
take at once waited for the broker's ACK, which Linux delays up to 40 ms while the broker waits
for the rest of the packet: bench/sync.py's ingest stalled ~40 ms at a time, 75 times in one
100,000-entry run (28,635 entries/s; 145,000/s with it off, same window)."""

OnMessage = Callable[[str, bytes], Awaitable[None]]
OnConnect = Callable[[], Awaitable[None]]
OnDisconnect = Callable[[str], Awaitable[None]]


class MqttLinkError(Exception):
    """Base of the MQTT link's errors (the device side's is agent.link.DeviceLinkError)."""


class LinkDown(MqttLinkError):
    """The link is not connected, or the broker did not confirm a publish in time."""


@dataclass(frozen=True, kw_only=True)
class Will:
    """The last will the broker publishes when the link dies without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


CANCEL_CHECK_S = 1.0
"""How often a session waiting on its dispatch task checks for a cancellation that a library lost
(transport/cancel.py): a stop is honoured within a second even then."""

PROBE_MISSES = 3
"""Probe periods without any message before a session counts as deaf: one lost probe (QoS 1 is
not trusted) is not enough to drop a working link."""


@dataclass(frozen=True, kw_only=True)
class Probe:
    """A topic only this client publishes and reads, to prove its subscriptions are in force."""

    topic: str
    every_s: float = 10.0


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """Where the broker is, parsed from `mqtt://host[:port]`."""

    host: str
    port: int


def parse_url(url: str) -> Endpoint:
    """Parse `mqtt://host[:port]`. Raises ValueError naming the bad part."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt":
        raise ValueError(f"url: scheme {parts.scheme!r} in {url!r}, expected 'mqtt'")
    if not parts.hostname:
        raise ValueError(f"url: no host in {url!r}")
    try:
        port = parts.port or MQTT_DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f"url: bad port in {url!r}") from exc
    return Endpoint(host=parts.hostname, port=port)


class MqttLink:
    """A reconnecting MQTT client. Start `run()` in a task; `publish` from anywhere.

    Raises ValueError from the constructor for a bad `url`.
    """

    def __init__(
        self, url: str, *, client_id: str, username: str | None = None, password: str | None = None,
        will: Will | None = None, subscriptions: Sequence[tuple[str, int]] = (),
        keepalive_s: int = 10, backoff: Backoff = Backoff(),
        on_connect: OnConnect | None = None, on_disconnect: OnDisconnect | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = parse_url(url)
        self.client_id = client_id
        self._credentials = (username, password)
        self.will, self._subscriptions = will, tuple(subscriptions)
        self._keepalive_s, self._backoff = keepalive_s, backoff
        self.on_connect, self._on_disconnect = on_connect, on_disconnect
        self._rng = rng or random.Random()
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.probe: Probe | None = None
        self._drop = asyncio.Event()
        self._drop_reason = ""

    async def wait_connected(self, timeout: float) -> None:
        """Wait until connected and subscribed. Raises TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            await self.connected.wait()

    async def run(self, on_message: OnMessage) -> NoReturn:
        """Connect, subscribe, dispatch messages; reconnect forever until cancelled.

        Exceptions raised by `on_message`, `on_connect` or `on_disconnect` (other than LinkDown)
        propagate out of `run`: a handler bug is not a network fault.
        """
        attempt = 0
        while True:
            raise_if_cancelled()
            reason, was_up = await self._session(on_message)
            attempt = 0 if was_up else attempt + 1
            if was_up and self._on_disconnect is not None:
                await self._on_disconnect(reason)
            delay = self._backoff.delay(attempt, self._rng)
            log.info("mqtt_reconnect_in s=%.3f attempt=%d client_id=%s", delay, attempt, self.client_id)
            await asyncio.sleep(delay)

    def reconnect(self, reason: str) -> None:
        """End the current session (if any) now and connect again, subscribing afresh."""
        if self.connected.is_set():
            self._drop_reason = reason
            self._drop.set()

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                      timeout_s: float = 5) -> None:
        """Publish and, for qos > 0, wait for the broker's confirmation.

        Raises LinkDown if not connected, or if the publish fails or is not confirmed in time.
        """
        client = self._client
        if client is None or not self.connected.is_set():
            raise LinkDown(f"publish {topic}: link {self.client_id} is down")
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=timeout_s)
        except aiomqtt.MqttError as exc:
            raise LinkDown(f"publish {topic}: {exc}") from exc

    async def _session(self, on_message: OnMessage) -> tuple[str, bool]:
        """One connection, from connect to loss. Returns (reason, whether it was ever up)."""
        client = self._make_client()
        was_up = False
        prober: asyncio.Task[None] | None = None
        try:
            async with client:
                was_up = True
                await self._came_up(client)
                if self.probe is not None:
                    prober = asyncio.create_task(self._send_probes(self.probe), name="mqtt-probe")
                await self._dispatch_until_dropped(client, on_message)
        except (aiomqtt.MqttError, LinkDown) as exc:
            reason = str(exc) or type(exc).__name__
        else:  # pragma: no cover - the message iterator only ends by raising
            reason = "message stream ended"
        finally:
            if prober is not None:
                prober.cancel()
            self._went_down()
        log.warning("mqtt_disconnected reason=%r client_id=%s was_up=%s", reason, self.client_id, was_up)
        return reason, was_up

    async def _dispatch_until_dropped(self, client: aiomqtt.Client, on_message: OnMessage) -> None:
        """`_dispatch` until it raises, or until `reconnect` asks for a new session."""
        self._drop.clear()
        dispatch = asyncio.create_task(self._dispatch(client, on_message), name="mqtt-dispatch")
        dropped = asyncio.create_task(self._drop.wait(), name="mqtt-drop")
        try:
            while not (dispatch.done() or dropped.done()):
                await asyncio.wait((dispatch, dropped), timeout=CANCEL_CHECK_S,
                                   return_when=asyncio.FIRST_COMPLETED)
                raise_if_cancelled()  # a cancellation a library swallowed is this task's
        finally:
            for task in (dispatch, dropped):
                task.cancel()
            await asyncio.gather(dispatch, dropped, return_exceptions=True)
        if dispatch.done() and not dispatch.cancelled() and dispatch.exception() is not None:
            raise dispatch.exception()  # type: ignore[misc]
        raise LinkDown(f"reconnect asked: {self._drop_reason}")

    async def _dispatch(self, client: aiomqtt.Client, on_message: OnMessage) -> None:
        probe = self.probe
        deaf_after = None if probe is None else probe.every_s * PROBE_MISSES
        while True:
            try:
                async with asyncio.timeout(deaf_after):
                    message = await anext(client.messages)
            except TimeoutError:
                raise LinkDown(f"deaf: nothing received for {deaf_after:g} s, not even the "
                               f"probe on {probe.topic if probe else ''}") from None
            if probe is None or str(message.topic) != probe.topic:
                await on_message(str(message.topic), _payload_bytes(message.payload))
            raise_if_cancelled()

    async def _send_probes(self, probe: Probe) -> None:
        while True:
            try:
                await self.publish(probe.topic, b"probe", qos=1)
            except LinkDown:
                pass  # the dispatch loop notices the silence
            await asyncio.sleep(probe.every_s)

    async def _came_up(self, client: aiomqtt.Client) -> None:
        subscriptions = list(self._subscriptions)
        if self.probe is not None:
            subscriptions.append((self.probe.topic, 1))
        if subscriptions:
            codes = await client.subscribe(subscriptions)
            for (flt, _), code in zip(subscriptions, codes, strict=False):
                if getattr(code, "is_failure", False):
                    log.error("mqtt_subscribe_refused filter=%s client_id=%s", flt, self.client_id)
        self._client = client
        self.connected.set()
        log.info("mqtt_connected host=%s port=%d client_id=%s", self.endpoint.host,
                 self.endpoint.port, self.client_id)
        if self.on_connect is not None:
            await self.on_connect()

    def _went_down(self) -> None:
        self.connected.clear()
        self._client = None

    def _make_client(self) -> aiomqtt.Client:
        username, password = self._credentials
        will = self.will
        return aiomqtt.Client(
            self.endpoint.host, self.endpoint.port, identifier=self.client_id,
            username=username, password=password, keepalive=self._keepalive_s,
            timeout=float(self._keepalive_s), clean_session=True,
            socket_options=SOCKET_OPTIONS,
            will=aiomqtt.Will(will.topic, will.payload, will.qos, will.retain) if will else None,
        )


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()
