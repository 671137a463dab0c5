"""Mosquitto-only behaviour of our clients (MqttLink, last will) on a real Mosquitto configured by the
export. The policy tests themselves run on both brokers (`any_broker` in tests/hub/test_broker.py)."""
from __future__ import annotations

import asyncio
import random

import pytest

from transport.backoff import Backoff
from transport.mqtt import MqttLink
from tests.conftest import FLEET, BrokerEndpoint
from tests.hub.test_broker import client, next_message
from tests.transport.test_mqtt import dying_device

pytestmark = pytest.mark.mosquitto
WAIT_S = 5.0


async def test_mqtt_link_subscribes_and_publishes_through_mosquitto(
    mosquitto_broker: BrokerEndpoint,
) -> None:
    received: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    link = MqttLink(mosquitto_broker.url, client_id="fp-agent-d1", username="d1",
                    password=FLEET["d1"].password, subscriptions=[("fp/v1/s1/d1/cmd", 1)],
                    backoff=Backoff(initial_s=0.05, max_s=0.2), rng=random.Random(1))
    async with client(mosquitto_broker, "hub") as hub:
        await hub.subscribe("fp/v1/+/+/status", qos=1)
        task = asyncio.create_task(link.run(lambda t, p: received.put((t, p))))
        try:
            await link.wait_connected(WAIT_S)
            await link.publish("fp/v1/s1/d1/status", b"online", retain=True)
            assert (await next_message(hub)).payload == b"online"
            await hub.publish("fp/v1/s1/d1/cmd", b"go", qos=1)
            async with asyncio.timeout(WAIT_S):
                assert await received.get() == ("fp/v1/s1/d1/cmd", b"go")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_last_will_offline_is_delivered_by_mosquitto_when_the_device_dies(
    mosquitto_broker: BrokerEndpoint,
) -> None:
    async with client(mosquitto_broker, "hub") as hub:
        await hub.subscribe("fp/v1/+/+/status", qos=1)
        async with dying_device(mosquitto_broker) as proc:
            proc.kill()
            message = await next_message(hub)
        assert (str(message.topic), message.payload) == ("fp/v1/s1/d1/status", b"offline")
