"""MqttLink: backoff math (pure), and reconnect, resubscribe, LinkDown and last will against a real
amqtt broker."""
from __future__ import annotations

import asyncio
import logging
import random
import socket
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest

from transport.backoff import Backoff
from transport.mqtt import Endpoint, LinkDown, MqttLink, Probe, parse_url
from hub.broker import EmbeddedBroker
from tests.conftest import FLEET, BrokerEndpoint, fleet_specs

WAIT_S = 5.0
FAST = Backoff(initial_s=0.05, max_s=0.2, jitter=0.3)
REPO = Path(__file__).resolve().parents[2]


# --- pure ---------------------------------------------------------------------------------------


def test_backoff_doubles_then_caps_and_jitter_only_shortens() -> None:
    backoff = Backoff(initial_s=0.2, max_s=10, jitter=0.3)
    rng = random.Random(7)
    delays = [backoff.delay(n, rng) for n in range(12)]
    bases = [min(10.0, 0.2 * 2**n) for n in range(12)]
    assert all(0.7 * base <= d <= base for d, base in zip(delays, bases, strict=True))
    assert max(delays) <= 10
    assert len({round(d, 9) for d in delays[-4:]}) == 4  # capped delays still spread apart


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    backoff = Backoff()
    first = [backoff.delay(n, random.Random(1)) for n in range(5)]
    assert first == [backoff.delay(n, random.Random(1)) for n in range(5)]


def test_backoff_survives_a_huge_attempt_count() -> None:
    assert Backoff(max_s=10, jitter=0).delay(10_000, random.Random(0)) == 10


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"initial_s": 0}, "initial_s"), ({"initial_s": 20, "max_s": 10}, "initial_s"),
     ({"jitter": 1}, "jitter"), ({"factor": 0.5}, "factor")],
)
def test_backoff_refuses_nonsense_settings(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"backoff.{field}"):
        Backoff(**kwargs)


def test_parse_url_reads_host_and_port_and_defaults_to_1883() -> None:
    assert parse_url("mqtt://127.0.0.1:4242") == Endpoint(host="127.0.0.1", port=4242)
    assert parse_url("mqtt://broker.local") == Endpoint(host="broker.local", port=1883)
    for bad in ("http://x:1", "mqtt://:1883", "mqtt://x:notaport"):
        with pytest.raises(ValueError, match="url"):
            parse_url(bad)


async def test_publish_raises_link_down_before_any_connection() -> None:
    link = MqttLink("mqtt://127.0.0.1:1", client_id="x")
    with pytest.raises(LinkDown, match="is down"):
        await link.publish("fp/v1/s1/d1/status", b"x")


# --- real broker --------------------------------------------------------------------------------


class Recorder:
    """Collects what a link reports, with bounded waits."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.events: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(self, topic: str, payload: bytes) -> None:
        await self.messages.put((topic, payload))

    async def on_connect(self) -> None:
        await self.events.put("up")

    async def on_disconnect(self, reason: str) -> None:
        await self.events.put("down")

    async def next_event(self) -> str:
        async with asyncio.timeout(WAIT_S):
            return await self.events.get()

    async def next_message(self) -> tuple[str, bytes]:
        async with asyncio.timeout(WAIT_S):
            return await self.messages.get()


def device_link(url: str, recorder: Recorder, **kw: object) -> MqttLink:
    return MqttLink(url, client_id="fp-agent-d1", username="d1", password=FLEET["d1"].password,
                    subscriptions=[("fp/v1/s1/d1/cmd", 1)], backoff=FAST, rng=random.Random(3),
                    on_connect=recorder.on_connect, on_disconnect=recorder.on_disconnect,
                    **kw)  # type: ignore[arg-type]


async def running(link: MqttLink, recorder: Recorder) -> asyncio.Task[None]:
    task = asyncio.create_task(link.run(recorder.on_message), name=f"mqtt-{link.client_id}")
    await link.wait_connected(WAIT_S)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def hub_client(host: str, port: int) -> aiomqtt.Client:
    return aiomqtt.Client(host, port, identifier="fieldpact-hub/test", username="hub",
                          password=FLEET["hub"].password)


async def test_link_publishes_receives_and_logs_connected(
    amqtt_broker: BrokerEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fieldpact.mqtt")
    recorder = Recorder()
    link = device_link(amqtt_broker.url, recorder)
    async with await hub_client(amqtt_broker.host, amqtt_broker.port) as hub:
        await hub.subscribe("fp/v1/+/+/telemetry", qos=1)
        task = await running(link, recorder)
        assert await recorder.next_event() == "up"
        await link.publish("fp/v1/s1/d1/telemetry", b"t=1")
        async with asyncio.timeout(WAIT_S):
            message = await anext(aiter(hub.messages))
        assert message.payload == b"t=1"
        await hub.publish("fp/v1/s1/d1/cmd", b"go", qos=1)
        assert await recorder.next_message() == ("fp/v1/s1/d1/cmd", b"go")
        await stop(task)
    assert any(r.getMessage().startswith("mqtt_connected ") for r in caplog.records)
    assert not link.connected.is_set()


async def test_the_link_sends_each_publish_at_once_with_nagle_off(
    amqtt_broker: BrokerEndpoint,
) -> None:
    # With Nagle's algorithm on (paho's default), the tail of a large journal batch waited for
    # the broker's delayed ACK: 40 ms stalls in bench/sync.py's ingest (transport/mqtt.py).
    recorder = Recorder()
    link = device_link(amqtt_broker.url, recorder)
    task = await running(link, recorder)
    try:
        assert link._client is not None
        sock = link._client._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        await stop(task)


async def test_link_reconnects_and_resubscribes_after_broker_restart_on_same_port(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fieldpact.mqtt")
    recorder, users = Recorder(), fleet_specs()
    async with EmbeddedBroker(users=users) as broker:
        port = broker.port
        link = device_link(broker.url, recorder)
        task = await running(link, recorder)
        assert await recorder.next_event() == "up"
    try:
        assert await recorder.next_event() == "down"
        with pytest.raises(LinkDown):
            await link.publish("fp/v1/s1/d1/telemetry", b"lost")
        async with EmbeddedBroker(port=port, users=users):
            assert await recorder.next_event() == "up"
            async with await hub_client("127.0.0.1", port) as hub:
                await hub.publish("fp/v1/s1/d1/cmd", b"again", qos=1)
                assert await recorder.next_message() == ("fp/v1/s1/d1/cmd", b"again")
            await link.publish("fp/v1/s1/d1/telemetry", b"back")
            await stop(task)
    finally:
        task.cancel()
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("mqtt_disconnected reason=") for m in messages)
    assert any(m.startswith("mqtt_reconnect_in s=") for m in messages)


async def test_a_link_whose_subscriptions_the_broker_forgot_finds_itself_deaf_and_resubscribes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker keeps the connection but drops every subscription (amqtt 0.12 does this on a
    session take-over). Injected through amqtt's own subscription table: the only way to make a
    real broker forget without the bug's trigger, which hostile-broker is removing."""
    caplog.set_level(logging.INFO, logger="fieldpact.mqtt")
    recorder = Recorder()
    async with EmbeddedBroker(users=fleet_specs()) as broker:
        link = MqttLink(broker.url, client_id="fieldpact-hub", username="hub",
                        password=FLEET["hub"].password, subscriptions=[("fp/v1/+/+/journal", 1)],
                        backoff=FAST, on_connect=recorder.on_connect,
                        on_disconnect=recorder.on_disconnect)
        link.probe = Probe(topic="fp/v1/_hub/probe", every_s=0.2)
        task = await running(link, recorder)
        assert await recorder.next_event() == "up"
        broker._broker._subscriptions.clear()  # noqa: SLF001 - the fault: subscriptions forgotten
        assert await recorder.next_event() == "down"
        assert await recorder.next_event() == "up"
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="fp-agent-d1/test", username="d1",
                                  password=FLEET["d1"].password) as device:
            await device.publish("fp/v1/s1/d1/journal", b"batch", qos=1)
            assert await recorder.next_message() == ("fp/v1/s1/d1/journal", b"batch")
        await stop(task)
    assert any("deaf" in r.getMessage() for r in caplog.records)


async def test_link_with_refused_credentials_keeps_retrying_and_never_connects(
    amqtt_broker: BrokerEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fieldpact.mqtt")
    link = MqttLink(amqtt_broker.url, client_id="fp-agent-d1", username="d1", password="wrong", backoff=FAST)
    task = asyncio.create_task(link.run(Recorder().on_message))
    try:
        with pytest.raises(TimeoutError):
            await link.wait_connected(0.5)
        attempts = [r for r in caplog.records if r.getMessage().startswith("mqtt_reconnect_in")]
        assert len(attempts) >= 2
    finally:
        await stop(task)


DYING_DEVICE = textwrap.dedent("""
    import asyncio, sys
    from transport.mqtt import MqttLink, Will

    async def main() -> None:
        url, password = sys.argv[1], sys.argv[2]
        link = MqttLink(url, client_id="fp-agent-d1", username="d1", password=password,
                        will=Will(topic="fp/v1/s1/d1/status", payload=b"offline"))
        async def ignore(topic: str, payload: bytes) -> None: ...
        task = asyncio.create_task(link.run(ignore))
        await link.wait_connected(10)
        print("up", flush=True)
        await task

    asyncio.run(main())
""")


@asynccontextmanager
async def dying_device(broker: BrokerEndpoint) -> AsyncIterator[asyncio.subprocess.Process]:
    """A separate process running MqttLink as d1 with an "offline" will; yielded once connected."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DYING_DEVICE, broker.url, FLEET["d1"].password,
        cwd=REPO, stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(WAIT_S * 2):  # includes interpreter start and imports
            assert await proc.stdout.readline() == b"up\n"
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_last_will_offline_is_delivered_when_the_client_process_dies(
    amqtt_broker: BrokerEndpoint,
) -> None:
    async with await hub_client(amqtt_broker.host, amqtt_broker.port) as hub:
        await hub.subscribe("fp/v1/+/+/status", qos=1)
        async with dying_device(amqtt_broker) as proc:
            proc.kill()
            async with asyncio.timeout(WAIT_S):
                message = await anext(aiter(hub.messages))
        assert (str(message.topic), message.payload) == ("fp/v1/s1/d1/status", b"offline")
