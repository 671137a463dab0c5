"""One MQTT client connection on amqtt 0.12, held to what fieldpact allows once it is admitted.

amqtt buffers a packet of any declared size (up to MQTT's 256 MiB), never disconnects a client
whose keepalive expired (so its will never fires), keeps every unreleased incoming QoS 2 message,
and queues deliveries for a subscriber that stopped reading without bound. Here: packets are capped
on the reader (MAX_PACKET_BYTES, hub/mqtt_framing.py), an expired keepalive drops the connection,
more than MAX_INFLIGHT_QOS2 unreleased QoS 2 messages disconnect the client, and deliveries past
MAX_PENDING_DELIVERIES are dropped. Regression tests: tests/hub/test_hostile_broker.py.
Packets written to a connection in one loop iteration leave in one write (CoalescingWriter).
Admission and sessions are hub/amqtt_session.py's.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.mqtt.constants import QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

from hub.mqtt_framing import PacketSizeGuard, PacketTooLarge

log = logging.getLogger(__name__)

MAX_INFLIGHT_QOS2 = 16
"""Unreleased incoming QoS 2 messages per connection; we never publish QoS 2 ourselves."""
MAX_PENDING_DELIVERIES = 1000
"""Deliveries queued for one subscriber; Mosquitto's max_queued_messages default."""


class CappedReader(StreamReaderAdapter):  # type: ignore[misc]
    """amqtt's TCP reader with PacketSizeGuard in front: an oversize packet reads as end of stream,
    which makes amqtt drop the connection (and publish the client's will)."""

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        super().__init__(reader)
        self._guard, self._tripped = PacketSizeGuard(limit), False

    async def read(self, n: int = -1) -> bytes:
        if self._tripped:
            raise asyncio.IncompleteReadError(b"", n if n >= 0 else None)
        data: bytes = await super().read(n)
        try:
            self._guard.feed(data)
        except PacketTooLarge as exc:
            self._tripped = True
            log.warning("mqtt_packet_refused reason=too_large detail=%s", exc)
            raise asyncio.IncompleteReadError(b"", n if n >= 0 else None) from None
        return data


class CoalescingWriter(StreamWriterAdapter):  # type: ignore[misc]
    """amqtt's TCP writer, the packets written in one loop iteration sent as one write: amqtt
    writes every packet on its own, and with 1,000 devices at 1 Hz the broker spent a sixth of
    its time in one send() per delivery to the hub (bench/sync.py, py-spy). Order is kept (one
    buffer per connection, flushed first by close); `drain` still waits while the transport is
    over its high-water mark, so a subscriber that stops reading still pushes back."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        super().__init__(writer)
        self._buffer: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if self.is_closed:
            return
        if not self._buffer:
            self._loop.call_soon(self._flush)
        self._buffer.append(bytes(data))

    def _flush(self) -> None:
        data, self._buffer = b"".join(self._buffer), []
        if data and not self.is_closed:
            self._writer.write(data)

    async def drain(self) -> None:
        if not self.is_closed:
            await self._writer.drain()

    async def close(self) -> None:
        self._flush()
        await super().close()


class ConnectionHandler(BrokerProtocolHandler):  # type: ignore[misc]
    """amqtt's broker-side protocol handler, plus keepalive enforcement, a QoS 2 cap and a cap on
    deliveries queued for a subscriber that does not read."""

    _closing: asyncio.Task[None] | None = None
    _pending = 0           # deliveries to this client not yet written (and, QoS 1, acked)
    _dropping = False      # logging once per episode of a full queue

    def handle_read_timeout(self) -> None:
        # amqtt's own is a no-op: a half-open client stayed "connected" forever, its will unsent.
        if self._closing is None and self.session is not None:
            log.warning("mqtt_keepalive_expired client_id=%s", self.session.client_id)
            self.abort()
            self._closing = asyncio.ensure_future(self.handle_connection_closed())

    def abort(self) -> None:
        """Drop the TCP connection now. A graceful close drains first, and a peer that is gone
        with our send buffer full never lets the drain finish."""
        raw = getattr(self.writer, "_writer", None)  # amqtt's StreamWriterAdapter keeps it there
        if isinstance(raw, asyncio.StreamWriter):
            raw.transport.abort()

    async def mqtt_publish(self, topic: str, data: bytes | bytearray, qos: int | None,
                           retain: bool, ack_timeout: int | None = None) -> Any:
        # amqtt starts one task per delivery; for a client that stops reading they block on its
        # full socket and pile up without bound. Past the cap they are dropped, as Mosquitto's
        # max_queued_messages does (delivery never rests on the broker: journal seq + ack).
        if self._pending >= MAX_PENDING_DELIVERIES:
            if not self._dropping and self.session is not None:
                log.warning("mqtt_delivery_dropped reason=slow_subscriber client_id=%s limit=%d",
                            self.session.client_id, MAX_PENDING_DELIVERIES)
            self._dropping = True
            return None
        self._pending += 1
        try:
            return await super().mqtt_publish(topic, data, qos, retain, ack_timeout)
        finally:
            self._pending -= 1
            self._dropping = self._dropping and self._pending > MAX_PENDING_DELIVERIES // 2

    async def handle_publish(self, publish_packet: Any) -> None:
        if publish_packet.qos == QOS_2 and self.session is not None \
                and len(self.session.inflight_in) >= MAX_INFLIGHT_QOS2:
            log.warning("mqtt_packet_refused reason=qos2_inflight client_id=%s limit=%d",
                        self.session.client_id, MAX_INFLIGHT_QOS2)
            await self.handle_connection_closed()
            return
        await super().handle_publish(publish_packet)
