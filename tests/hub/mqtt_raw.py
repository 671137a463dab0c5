"""Hand-built MQTT 3.1.1 packets, for tests that must send what no well-behaved client library
would: a silent connection, an oversize packet, QoS 2 publishes never released."""
from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

CONNACK_LEN = 4


def varint(n: int) -> bytes:
    """MQTT remaining-length encoding (section 2.2.3)."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def connect(client_id: str, username: str | None = None, password: str | None = None, *,
            keepalive: int = 60, will: tuple[str, bytes] | None = None) -> bytes:
    """A clean-session CONNECT; `will` is (topic, payload), sent QoS 1 retained."""
    flags, payload = 0x02, mqtt_str(client_id)
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20
        payload += mqtt_str(will[0]) + mqtt_str(will[1])
    if username is not None:
        flags |= 0x80
        payload += mqtt_str(username)
    if password is not None:
        flags |= 0x40
        payload += mqtt_str(password)
    body = mqtt_str("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big") + payload
    return b"\x10" + varint(len(body)) + body


def publish_qos2(topic: str, packet_id: int, payload: bytes) -> bytes:
    body = mqtt_str(topic) + packet_id.to_bytes(2, "big") + payload
    return b"\x34" + varint(len(body)) + body


def subscribe(packet_id: int, flt: str, qos: int = 1) -> bytes:
    body = packet_id.to_bytes(2, "big") + mqtt_str(flt) + bytes([qos])
    return b"\x82" + varint(len(body)) + body


@contextlib.asynccontextmanager
async def raw_session(host: str, port: int, packet: bytes | None = None, *,
                      rcvbuf: int | None = None
                      ) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]]:
    """Open a TCP connection, send `packet` (a CONNECT) if given and read the CONNACK (b"" if none).
    `rcvbuf` shrinks the socket's receive buffer (a client that stops reading then backs up fast)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        connack = b""
        if packet is not None:
            writer.write(packet)
            await writer.drain()
            async with asyncio.timeout(10):
                connack = await reader.readexactly(CONNACK_LEN)
        yield reader, writer, connack
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def closed_by_peer(reader: asyncio.StreamReader, timeout_s: float) -> bool:
    """True if the peer closes the connection within `timeout_s` (whatever it sends first)."""
    try:
        async with asyncio.timeout(timeout_s):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True
