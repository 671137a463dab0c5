"""Issue 9, findings 1 and 4, and the other session-level holes found in amqtt 0.12, reproduced
against the real embedded broker and the real hub (and a real Mosquitto, configured by
`export-mosquitto`'s files, where the attack applies there too)."""
from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiomqtt
import pytest

from contracts.topics import Channel
from transport.backoff import Backoff
from transport.mqtt import MqttLink
from hub import amqtt_connection, amqtt_session as hub_broker
from hub import broker as hub_broker_plugins
from hub.acl.passwords import check_password
from hub.acl.policy import MAX_PACKET_BYTES, BrokerRole
from hub.amqtt_connection import MAX_INFLIGHT_QOS2
from hub.app import HubRuntime
from hub.broker import EmbeddedBroker
from hub.mqtt_framing import PacketSizeGuard, PacketTooLarge
from hub.config import IntegrationCredential
from tests.conftest import FLEET, BrokerEndpoint, FleetUser, fleet_specs
from tests.hub.mqtt_raw import (closed_by_peer, connect, publish_qos2, raw_session, subscribe,
                                varint)
from tests.hub.sync_helpers import (batch, birth, chain, device_client, hub_config, publish,
                                    running_hub, wait_ack)
from tests.hub.test_broker import assert_only_marker_arrives, client, next_message
from tests.waiting import eventually

WAIT_S = 10.0
FAST = Backoff(initial_s=0.05, max_s=0.2)
# (username, password) an attacker tries with a victim's client id: none, a wrong one, and another
# login's valid credentials.
ATTACKS = [(None, None), ("d1", "wrong"), ("d2", FLEET["d2"].password)]


async def attempt(broker: BrokerEndpoint, identifier: str, username: str | None,
                  password: str | None) -> bool:
    """Connect and disconnect at once; True if the broker accepted the CONNECT."""
    try:
        async with aiomqtt.Client(broker.host, broker.port, identifier=identifier,
                                  username=username, password=password, timeout=WAIT_S):
            return True
    except aiomqtt.MqttError:
        return False


@contextlib.asynccontextmanager
async def agent_link(broker: BrokerEndpoint, received: asyncio.Queue[tuple[str, bytes]]
                     ) -> AsyncIterator[MqttLink]:
    """d1's real agent link (MqttLink, client id fp-agent-d1), subscribed to its cmd topic."""
    link = MqttLink(broker.url, client_id="fp-agent-d1", username="d1",
                    password=FLEET["d1"].password, subscriptions=[("fp/v1/s1/d1/cmd", 1)],
                    backoff=FAST, rng=random.Random(1))
    task = asyncio.create_task(link.run(lambda t, p: received.put((t, p))), name="victim")
    try:
        await link.wait_connected(WAIT_S)
        yield link
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --- finding 1: session takeover --------------------------------------------------------------


@pytest.mark.parametrize(("username", "password"), ATTACKS)
async def test_a_connect_with_an_agents_client_id_never_makes_the_agent_deaf(
        any_broker: BrokerEndpoint, username: str | None, password: str | None) -> None:
    received: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    async with agent_link(any_broker, received) as link, client(any_broker, "hub") as hub:
        accepted = await attempt(any_broker, "fp-agent-d1", username, password)
        # Mosquitto accepts d2's own login (under its own client id, use_username_as_clientid).
        assert not accepted or (any_broker.kind == "mosquitto" and username == "d2")
        await hub.publish("fp/v1/s1/d1/cmd", b"still-there", qos=1)
        async with asyncio.timeout(WAIT_S):
            assert await received.get() == ("fp/v1/s1/d1/cmd", b"still-there")
        assert link.connected.is_set()


@pytest.mark.parametrize(("username", "password"), ATTACKS)
async def test_a_connect_with_the_hubs_client_id_never_makes_the_real_hub_deaf(
        tmp_path: Path, username: str | None, password: str | None) -> None:
    entries = chain(20)
    async with running_hub(tmp_path) as hub:
        assert hub.broker is not None
        endpoint = BrokerEndpoint(host="127.0.0.1", port=hub.broker.port, users=FLEET)
        async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
            assert not await attempt(endpoint, "fieldpact-hub", username, password)
            await publish(dev, "d1", Channel.STATUS, birth("d1", 20), retain=True)
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", entries))
            acked = await wait_ack(dev, 20)  # the hub heard the journal and answered
    assert acked == 20


async def test_a_device_may_use_only_its_own_client_ids(amqtt_broker: BrokerEndpoint) -> None:
    d1 = FLEET["d1"].password
    for identifier in ("fieldpact-hub", "fp-agent-d2", "fp-agent-d1x", "fp-agent-d1/", "d1",
                       "fieldpact-hub/x", "fp-int-scada"):
        assert not await attempt(amqtt_broker, identifier, "d1", d1), identifier
    for identifier in ("fp-agent-d1", "fp-agent-d1/debug", ""):  # "": broker-assigned random id
        assert await attempt(amqtt_broker, identifier, "d1", d1), identifier
    assert await attempt(amqtt_broker, "fp-int-scada/1", "scada", FLEET["scada"].password)
    assert not await attempt(amqtt_broker, "fp-int-d1", "scada", FLEET["scada"].password)


async def test_an_id_held_by_another_login_of_the_same_role_is_refused_and_the_holder_stays() -> None:
    users = {**FLEET, "hub2": FleetUser(name="hub2", password="hub2-secret", role=BrokerRole.HUB)}
    async with EmbeddedBroker(users=fleet_specs(users)) as embedded:
        broker = BrokerEndpoint(host=embedded.host, port=embedded.port, users=users)
        async with aiomqtt.Client(broker.host, broker.port, identifier="fieldpact-hub",
                                  **broker.login("hub")) as holder, client(broker, "d1") as d1:
            await holder.subscribe("fp/v1/+/+/telemetry", qos=1)
            assert not await attempt(broker, "fieldpact-hub", "hub2", "hub2-secret")
            await d1.publish("fp/v1/s1/d1/telemetry", b"heard", qos=1)
            assert (await next_message(holder)).payload == b"heard"


async def test_the_same_login_reconnecting_replaces_its_old_connection(
        amqtt_broker: BrokerEndpoint) -> None:
    async with client(amqtt_broker, "hub") as hub, \
            aiomqtt.Client(amqtt_broker.host, amqtt_broker.port, identifier="fp-agent-d1",
                           **amqtt_broker.login("d1")) as old:
        await hub.subscribe("fp/v1/s1/d1/status", qos=1)
        async with aiomqtt.Client(amqtt_broker.host, amqtt_broker.port, identifier="fp-agent-d1",
                                  **amqtt_broker.login("d1")) as new:
            await new.subscribe("fp/v1/s1/d1/cmd", qos=1)
            with pytest.raises(aiomqtt.MqttError):  # the old connection was closed for it
                async with asyncio.timeout(WAIT_S):
                    async for _ in old.messages:
                        pass
            await hub.publish("fp/v1/s1/d1/cmd", b"to-new", qos=1)
            assert (await next_message(new)).payload == b"to-new"


async def test_persistent_sessions_are_refused_by_the_embedded_broker(
        amqtt_broker: BrokerEndpoint) -> None:
    with pytest.raises(aiomqtt.MqttCodeError):
        async with aiomqtt.Client(amqtt_broker.host, amqtt_broker.port, identifier="fp-agent-d1",
                                  clean_session=False, **amqtt_broker.login("d1")):
            pass


async def test_a_connect_flood_never_runs_more_than_two_password_checks_at_once(
        amqtt_broker: BrokerEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    running, peak, lock = 0, 0, threading.Lock()

    def counted(password: str, password_hash: str) -> bool:  # the real check, counted
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            return check_password(password, password_hash)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(hub_broker_plugins, "check_password", counted)
    flood = [attempt(amqtt_broker, "", "d1", f"guess-{i}") for i in range(12)]
    assert not any(await asyncio.gather(*flood))
    assert 1 <= peak <= hub_broker_plugins.PASSWORD_CHECKS_AT_ONCE
    assert await attempt(amqtt_broker, "fp-agent-d1", "d1", FLEET["d1"].password)


# --- finding 4: retained messages --------------------------------------------------------------


async def test_retained_messages_reach_a_new_client_only_through_its_own_read_acl(
        any_broker: BrokerEndpoint) -> None:
    async with client(any_broker, "hub") as hub, client(any_broker, "d2") as d2:
        await hub.subscribe("fp/v1/#", qos=1)  # so amqtt offered every retained topic at connect
        await d2.publish("fp/v1/s1/d2/status", b"d2-birth: boot, contract, last_seq", qos=1,
                         retain=True)
        await hub.publish("fp/v1/s1/d2/contract", b"d2-contract", qos=1, retain=True)
        await hub.publish("fp/v1/s1/d1/cmd", b"d1-retained-cmd", qos=1, retain=True)
        await next_message(hub)  # d2's birth is stored before d1 connects
        async with client(any_broker, "d1") as d1:
            await d1.subscribe("fp/v1/s1/d1/cmd", qos=1)
            first = await next_message(d1)  # its own retained cmd: nothing of d2's came before it
            assert (str(first.topic), first.payload) == ("fp/v1/s1/d1/cmd", b"d1-retained-cmd")
            await assert_only_marker_arrives(d1, hub, "fp/v1/s1/d1/cmd")
        await hub.publish("fp/v1/s1/d1/cmd", b"", qos=1, retain=True)  # clear retained state


async def test_on_the_real_hub_a_device_never_receives_another_devices_retained_birth(
        tmp_path: Path) -> None:
    hub = HubRuntime(hub_config(tmp_path))  # its subscriptions put fp/v1/+/+/status in the table
    try:
        async with hub.running():
            assert hub.broker is not None
            async with device_client("127.0.0.1", hub.broker.port, "d2") as d2:
                await publish(d2, "d2", Channel.STATUS, birth("d2", 0), retain=True)
            async with aiomqtt.Client("127.0.0.1", hub.broker.port, identifier="fp-agent-d1",
                                      username="d1", password=FLEET["d1"].password) as d1:
                await d1.subscribe("fp/v1/s1/d1/ack", qos=1)
                await publish(d1, "d1", Channel.STATUS, birth("d1", 5), retain=True)
                await publish(d1, "d1", Channel.JOURNAL, batch("d1", chain(5)))
                first = await next_message(d1)  # the hub's ack, and nothing of d2's before it
    finally:
        hub.close()
    assert str(first.topic) == "fp/v1/s1/d1/ack"


async def test_an_integration_reads_retained_status_of_its_sites_only(
        any_broker: BrokerEndpoint) -> None:
    async with client(any_broker, "hub") as hub:
        await hub.publish("fp/v1/s2/dx/status", b"other-site", qos=1, retain=True)
        await hub.publish("fp/v1/s1/d1/status", b"own-site", qos=1, retain=True)
        await hub.publish("fp/v1/_hub/status", b"hub-birth", qos=1, retain=True)
        async with client(any_broker, "scada") as scada:
            refused = await scada.subscribe("fp/v1/+/+/status", qos=1)
            if any_broker.kind == "amqtt":  # Mosquitto grants it, then filters by the read ACL
                assert refused[0].is_failure
            await scada.subscribe("fp/v1/s1/+/status", qos=1)
            await scada.subscribe("fp/v1/_hub/status", qos=1)
            seen: list[bytes] = []
            while not {b"own-site", b"hub-birth"} <= set(seen) and len(seen) < 5:
                seen.append((await next_message(scada)).payload)  # type: ignore[arg-type]
            assert b"other-site" not in seen and {b"own-site", b"hub-birth"} <= set(seen)
            await scada.publish("fp/v1/_hub/status", b"forged", qos=1, retain=True)
            await hub.publish("fp/v1/s2/dx/status", b"", qos=1, retain=True)  # clear
            await assert_only_marker_arrives(scada, hub, "fp/v1/s1/d2/status")


async def test_an_integration_configured_in_hub_toml_reads_points_on_the_hubs_own_broker(
        tmp_path: Path) -> None:
    scada = FLEET["scada"]
    cfg = replace(hub_config(tmp_path), integrations=(IntegrationCredential(
        name="scada", sites=("s1",), password_hash=scada.spec.password_hash),))
    hub = HubRuntime(cfg)
    try:
        async with hub.running():
            assert hub.broker is not None
            async with aiomqtt.Client("127.0.0.1", hub.broker.port, identifier="fp-int-scada",
                                      username="scada", password=scada.password) as integ, \
                    device_client("127.0.0.1", hub.broker.port, "d1") as dev:
                await integ.subscribe("fp/v1/s1/+/points/#", qos=1)
                await integ.publish("fp/v1/s1/d1/points/level", b"999", qos=1)  # refused
                await dev.publish("fp/v1/s1/d1/points/level", b'{"v": 4.2}', qos=1)
                message = await next_message(integ)
    finally:
        hub.close()
    assert (str(message.topic), message.payload) == ("fp/v1/s1/d1/points/level", b'{"v": 4.2}')


# --- other session-level holes -------------------------------------------------------------------


def test_packet_size_guard_follows_framing_and_refuses_an_oversize_declaration() -> None:
    guard = PacketSizeGuard(100)
    small = b"\x30" + varint(100) + b"x" * 100
    for i in range(len(small)):  # byte by byte, as amqtt reads headers
        guard.feed(small[i:i + 1])
    guard.feed(b"\xc0\x00" + small)  # PINGREQ, then another full packet in one read
    with pytest.raises(PacketTooLarge, match="101 bytes"):
        guard.feed(b"\x30" + varint(101))


async def test_an_oversize_packet_disconnects_the_client_before_its_body_is_read(
        any_broker: BrokerEndpoint) -> None:
    login = connect("fp-agent-d1", "d1", FLEET["d1"].password)
    async with raw_session(any_broker.host, any_broker.port, login) as (reader, writer, ack):
        assert ack == b"\x20\x02\x00\x00"
        topic = b"fp/v1/s1/d1/telemetry"
        writer.write(b"\x30" + varint(MAX_PACKET_BYTES + 1) + len(topic).to_bytes(2, "big") + topic)
        await writer.drain()
        assert await closed_by_peer(reader, WAIT_S)
    async with client(any_broker, "d1"):  # the broker is fine
        pass


async def test_a_connection_that_never_sends_connect_is_closed(
        amqtt_broker: BrokerEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_broker, "CONNECT_TIMEOUT_S", 0.5)
    async with raw_session(amqtt_broker.host, amqtt_broker.port) as (reader, _, _):
        assert await closed_by_peer(reader, WAIT_S)


async def test_a_silent_client_is_dropped_after_its_keepalive_and_its_will_is_published(
        amqtt_broker: BrokerEndpoint) -> None:
    login = connect("fp-agent-d1", "d1", FLEET["d1"].password, keepalive=1,
                    will=("fp/v1/s1/d1/status", b"offline"))
    async with client(amqtt_broker, "hub") as hub:
        await hub.subscribe("fp/v1/s1/d1/status", qos=1)
        async with raw_session(amqtt_broker.host, amqtt_broker.port, login) as (reader, _, ack):
            assert ack == b"\x20\x02\x00\x00"
            assert await closed_by_peer(reader, WAIT_S)  # silent: no PINGREQ, ever
        assert (await next_message(hub)).payload == b"offline"


async def test_unreleased_qos2_publishes_are_capped(amqtt_broker: BrokerEndpoint) -> None:
    login = connect("fp-agent-d1", "d1", FLEET["d1"].password)
    async with raw_session(amqtt_broker.host, amqtt_broker.port, login) as (reader, writer, ack):
        assert ack == b"\x20\x02\x00\x00"
        for packet_id in range(1, MAX_INFLIGHT_QOS2 + 3):  # never a PUBREL
            writer.write(publish_qos2("fp/v1/s1/d1/telemetry", packet_id, b"x" * 1000))
        await writer.drain()
        assert await closed_by_peer(reader, WAIT_S)


async def test_deliveries_to_a_subscriber_that_stopped_reading_are_capped(
        amqtt_broker: BrokerEndpoint, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(amqtt_connection, "MAX_PENDING_DELIVERIES", 50)
    login = connect("fp-agent-d1", "d1", FLEET["d1"].password)
    async with client(amqtt_broker, "hub") as hub, \
            raw_session(amqtt_broker.host, amqtt_broker.port, login, rcvbuf=4096) as (r, w, ack):
        assert ack == b"\x20\x02\x00\x00"
        w.write(subscribe(1, "fp/v1/s1/d1/cmd"))
        await w.drain()
        assert (await r.readexactly(5))[0] == 0x90  # SUBACK; from here on d1 reads nothing
        await hub.subscribe("fp/v1/s1/d1/status", qos=1)
        for _ in range(800):  # 13 MB: more than the kernel buffers on both sides hold
            await hub.publish("fp/v1/s1/d1/cmd", b"x" * 16384, qos=0)
        await eventually(lambda: "mqtt_delivery_dropped" in caplog.text, 30,
                         "the dropped delivery logged")
        await hub.publish("fp/v1/s1/d1/status", b"still-served", qos=1)
        assert (await next_message(hub)).payload == b"still-served"


async def test_an_integration_cannot_grow_the_subscription_table_without_bound(
        amqtt_broker: BrokerEndpoint) -> None:
    async with client(amqtt_broker, "scada") as scada, client(amqtt_broker, "hub") as hub:
        filters = [(f"fp/v1/s1/d{i}/points/p", 0) for i in range(hub_broker.MAX_SUBSCRIPTIONS + 5)]
        codes = await scada.subscribe(filters)
        assert [c.is_failure for c in codes] == [False] * hub_broker.MAX_SUBSCRIPTIONS + [True] * 5
        again = await scada.subscribe(filters[0][0], qos=0)  # one it holds: still fine
        assert not again[0].is_failure
        await hub.publish("fp/v1/s1/d0/points/p", b"1", qos=1)
        assert (await next_message(scada)).payload == b"1"


async def test_a_device_cannot_grow_the_retained_store_without_bound(
        amqtt_broker: BrokerEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_broker, "MAX_RETAINED_TOPICS", 10)
    async with client(amqtt_broker, "d1") as d1:
        for i in range(15):
            await d1.publish(f"fp/v1/s1/d1/points/p{i}", b"1", qos=1, retain=True)
        await d1.publish("fp/v1/s1/d1/points/p0", b"2", qos=1, retain=True)  # an update is fine
    async with client(amqtt_broker, "hub") as hub:
        await hub.subscribe("fp/v1/s1/d1/points/#", qos=1)
        await hub.subscribe("fp/v1/s1/d1/cmd", qos=1)
        await hub.publish("fp/v1/s1/d1/cmd", b"marker", qos=1)
        got = []
        while (message := await next_message(hub)).payload != b"marker":
            got.append((str(message.topic), message.payload))
    assert sorted(got) == sorted([("fp/v1/s1/d1/points/p0", b"2")] +
                                 [(f"fp/v1/s1/d1/points/p{i}", b"1") for i in range(1, 10)])


async def test_a_device_cannot_read_sys_or_wildcards_on_a_real_broker(
        any_broker: BrokerEndpoint) -> None:
    async with client(any_broker, "d1") as d1, client(any_broker, "hub") as hub:
        await d1.subscribe([("#", 1), ("$SYS/#", 1), ("fp/v1/#", 1), ("fp/v1/s1/+/cmd", 1),
                            ("fp/v1/s1/d1/cmd", 1)])
        await hub.publish("fp/v1/s1/d2/cmd", b"not yours", qos=1)
        await hub.publish("fp/v1/s1/d1/journal", b"not readable", qos=1)
        await assert_only_marker_arrives(d1, hub, "fp/v1/s1/d1/cmd")


async def test_a_will_outside_the_acl_is_refused_on_every_broker(any_broker: BrokerEndpoint) -> None:
    for will_topic in ("fp/v1/_hub/status", "fp/v1/s1/d2/status", "fp/v1/s1/d1/cmd"):
        will = aiomqtt.Will(will_topic, b"offline", 1, True)
        if any_broker.kind == "amqtt":
            with pytest.raises(aiomqtt.MqttCodeError):
                async with client(any_broker, "d1", will=will):
                    pass
            continue
        async with client(any_broker, "hub") as hub:  # Mosquitto accepts, then drops the will
            await hub.subscribe(will_topic, qos=1)
            proc_client = client(any_broker, "d1", will=will)
            await proc_client.__aenter__()
            await proc_client.__aexit__(None, None, None)
            await assert_only_marker_arrives(hub, hub, will_topic)
