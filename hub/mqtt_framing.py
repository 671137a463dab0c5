"""MQTT framing, pure: follow a connection's byte stream packet by packet (MQTT 3.1.1 section 2.2)
so that an oversize packet is refused from its header, before anything buffers its body."""
from __future__ import annotations

from hub.errors import HubError


class PacketTooLarge(HubError):
    """A client declared an MQTT packet larger than the broker accepts."""


class PacketSizeGuard:
    """Follows the MQTT framing of one connection's byte stream (section 2.2: a type byte, a 1-4
    byte remaining length, the body) and raises PacketTooLarge as soon as a packet declares more
    than `limit` bytes -- before amqtt reads (and buffers) its body. Pure: bytes in, no I/O."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._body = 0                # body bytes of the current packet still to come
        self._in_length = False       # inside the remaining-length varint
        self._value, self._mult = 0, 1

    def feed(self, data: bytes) -> None:
        """Account for `data`, the next bytes of the stream. Raises PacketTooLarge."""
        i = 0
        while i < len(data):
            if self._body:
                take = min(self._body, len(data) - i)
                self._body, i = self._body - take, i + take
                continue
            self._header_byte(data[i])
            i += 1

    def _header_byte(self, byte: int) -> None:
        if not self._in_length:  # the type-and-flags byte starts a packet
            self._in_length, self._value, self._mult = True, 0, 1
            return
        self._value += (byte & 0x7F) * self._mult
        self._mult *= 128
        if byte & 0x80:
            return
        self._in_length = False
        if self._value > self.limit:
            raise PacketTooLarge(f"packet of {self._value} bytes, limit {self.limit}")
        self._body = self._value
