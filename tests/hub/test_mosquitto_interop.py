"""The same policy on a real Mosquitto, configured from `mosquitto_acl` and `mosquitto_password_line`:
for sites that run their own broker instead of the embedded one."""
from __future__ import annotations

import asyncio
import random

import aiomqtt
import pytest

from fieldpact.mqtt import Backoff, MqttLink
from tests.conftest import FLEET, BrokerEndpoint
from tests.hub.test_broker import assert_only_marker_arrives, client, next_message
from tests.test_mqtt_link import dying_device

pytestmark = pytest.mark.mosquitto
WAIT_S = 5.0


async def test_device_telemetry_reaches_the_hub_on_mosquitto(mosquitto_broker: BrokerEndpoint) -> None:
    async with client(mosquitto_broker, "hub") as hub, client(mosquitto_broker, "d1") as dev:
        await hub.subscribe("fp/v1/+/+/telemetry", qos=1)
        await dev.publish("fp/v1/s1/d1/telemetry", b"t=1", qos=1)
        message = await next_message(hub)
        assert (str(message.topic), message.payload) == ("fp/v1/s1/d1/telemetry", b"t=1")


async def test_forged_device_publish_never_arrives_on_mosquitto(mosquitto_broker: BrokerEndpoint) -> None:
    async with client(mosquitto_broker, "hub") as hub, client(mosquitto_broker, "d1") as dev:
        await hub.subscribe("fp/v1/#", qos=1)
        await dev.publish("fp/v1/s1/d2/journal", b"forged", qos=1)
        await dev.publish("fp/v1/s1/d1/ack", b"forged", qos=1)
        await assert_only_marker_arrives(hub, dev, "fp/v1/s1/d1/telemetry")


async def test_device_never_reads_another_devices_contract_on_mosquitto(
    mosquitto_broker: BrokerEndpoint,
) -> None:
    async with client(mosquitto_broker, "hub") as hub, client(mosquitto_broker, "d1") as dev:
        # Whatever SUBACK mosquitto gives, the read ACL must keep d2's contract from d1.
        await dev.subscribe([("fp/v1/s1/d2/contract", 1), ("fp/v1/s1/d1/contract", 1)])
        await hub.publish("fp/v1/s1/d2/contract", b"not yours", qos=1)
        await assert_only_marker_arrives(dev, hub, "fp/v1/s1/d1/contract")


async def test_integration_reads_points_and_cannot_write_on_mosquitto(
    mosquitto_broker: BrokerEndpoint,
) -> None:
    async with client(mosquitto_broker, "scada") as scada, client(mosquitto_broker, "hub") as hub:
        await scada.subscribe("fp/v1/s1/+/points/#", qos=1)
        await hub.subscribe("fp/v1/#", qos=1)
        await scada.publish("fp/v1/s1/d1/points/level", b"999", qos=1)
        await assert_only_marker_arrives(hub, hub, "fp/v1/s1/d1/cmd")
        await hub.publish("fp/v1/s1/d1/points/level", b"4.2", qos=1)
        assert (await next_message(scada)).payload == b"4.2"


@pytest.mark.parametrize(("username", "password"), [("d1", "wrong"), ("nobody", "x"), (None, None)])
async def test_bad_credentials_are_refused_on_mosquitto(
    mosquitto_broker: BrokerEndpoint, username: str | None, password: str | None
) -> None:
    with pytest.raises(aiomqtt.MqttCodeError):
        async with aiomqtt.Client(mosquitto_broker.host, mosquitto_broker.port, username=username,
                                  password=password):
            pass


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
