"""Broker policy (pure) and the embedded amqtt broker enforcing it (real broker, real clients)."""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest

from contracts.topics import Channel, topic
from hub.acl.mosquitto import mosquitto_acl
from hub.acl.passwords import check_password, hash_password
from hub.acl.policy import Action, BrokerRole, UserSpec, allowed, client_id_allowed
from hub.broker import EmbeddedBroker
from tests.conftest import BrokerEndpoint, fleet_specs

WAIT_S = 5.0
_client_ids = itertools.count()
DEVICE = UserSpec(password_hash="x", role=BrokerRole.DEVICE, site="s1", device="d1")
HUB = UserSpec(password_hash="x", role=BrokerRole.HUB)
SCADA = UserSpec(password_hash="x", role=BrokerRole.INTEGRATION, sites=("s1",))


# --- pure policy --------------------------------------------------------------------------------


def test_password_hash_checks_only_the_right_password_and_is_salted() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first != second
    assert check_password("pw", first) and check_password("pw", second)
    assert not check_password("pW", first)


@pytest.mark.parametrize("bad", ["", "scrypt$1$2", "bcrypt$1$1$1$AA==$AA==", "scrypt$x$8$1$AA==$AA=="])
def test_check_password_treats_a_malformed_hash_as_a_mismatch(bad: str) -> None:
    assert not check_password("pw", bad)


def test_device_user_must_name_site_and_device() -> None:
    with pytest.raises(ValueError, match="device"):
        UserSpec(password_hash="x", role=BrokerRole.DEVICE, site="s1")
    with pytest.raises(ValueError, match="role: hub"):
        UserSpec(password_hash="x", role=BrokerRole.HUB, site="s1")


@pytest.mark.parametrize("channel", [Channel.STATUS, Channel.JOURNAL, Channel.CONTRACT_RESULT,
                                     Channel.TELEMETRY])
def test_device_may_publish_its_own_upstream_channels(channel: Channel) -> None:
    assert allowed(DEVICE, Action.PUBLISH, topic("s1", "d1", channel))
    assert allowed(DEVICE, Action.PUBLISH, topic("s1", "d1", Channel.POINTS, "level"))


@pytest.mark.parametrize(
    "text",
    [
        "fp/v1/s1/d2/telemetry",  # another device
        "fp/v1/s2/d1/journal",  # same device name, another site
        "fp/v1/s1/d1/ack",  # downstream channels are the hub's to write
        "fp/v1/s1/d1/contract",
        "fp/v1/s1/d1/cmd",
        "fp/v1/s1/d1/telemetry/extra",
        "other/topic",
        "fp/v1/s1/d1/+",  # a wildcard is never a publishable topic
    ],
)
def test_device_may_not_publish_elsewhere(text: str) -> None:
    assert not allowed(DEVICE, Action.PUBLISH, text)


def test_device_reads_only_its_own_downstream_channels() -> None:
    for channel in (Channel.ACK, Channel.CONTRACT, Channel.CMD):
        assert allowed(DEVICE, Action.SUBSCRIBE, topic("s1", "d1", channel))
        assert allowed(DEVICE, Action.RECEIVE, topic("s1", "d1", channel))
        assert not allowed(DEVICE, Action.SUBSCRIBE, topic("s1", "d2", channel))
    for wider in ("fp/v1/s1/d1/#", "fp/v1/s1/+/contract", "#", "fp/v1/s1/d1/+"):
        assert not allowed(DEVICE, Action.SUBSCRIBE, wider)
    assert not allowed(DEVICE, Action.RECEIVE, topic("s1", "d1", Channel.JOURNAL))


def test_hub_may_do_anything_under_fp_v1_only() -> None:
    for action in Action:
        assert allowed(HUB, action, "fp/v1/s9/d9/journal")
    assert allowed(HUB, Action.SUBSCRIBE, "fp/v1/#")
    assert not allowed(HUB, Action.SUBSCRIBE, "#")
    assert not allowed(HUB, Action.PUBLISH, "elsewhere/x")


def test_integration_reads_points_and_status_of_its_sites_and_writes_nothing() -> None:
    assert allowed(SCADA, Action.SUBSCRIBE, "fp/v1/s1/+/points/#")
    assert allowed(SCADA, Action.SUBSCRIBE, "fp/v1/s1/+/status")
    assert allowed(SCADA, Action.RECEIVE, "fp/v1/s1/d1/points/level")
    assert allowed(SCADA, Action.RECEIVE, "fp/v1/_hub/status")
    assert not allowed(SCADA, Action.RECEIVE, "fp/v1/s2/d1/points/level")  # another site
    assert not allowed(SCADA, Action.SUBSCRIBE, "fp/v1/+/+/points/#")  # wider than its sites
    assert not allowed(SCADA, Action.SUBSCRIBE, "fp/v1/s1/+/journal")
    assert not allowed(SCADA, Action.SUBSCRIBE, "fp/v1/#")
    assert not allowed(SCADA, Action.PUBLISH, "fp/v1/s1/d1/points/level")
    assert not allowed(SCADA, Action.PUBLISH, "fp/v1/_hub/status")


def test_integration_must_name_its_sites() -> None:
    with pytest.raises(ValueError, match="sites"):
        UserSpec(password_hash="x", role=BrokerRole.INTEGRATION)
    with pytest.raises(ValueError, match="sites"):
        UserSpec(password_hash="x", role=BrokerRole.DEVICE, site="s1", device="d1", sites=("s1",))


def test_only_the_hub_writes_the_hub_birth_and_everyone_reads_it() -> None:
    assert allowed(HUB, Action.PUBLISH, "fp/v1/_hub/status")
    for user in (DEVICE, SCADA):
        assert not allowed(user, Action.PUBLISH, "fp/v1/_hub/status")
        assert allowed(user, Action.SUBSCRIBE, "fp/v1/_hub/status")
        assert allowed(user, Action.RECEIVE, "fp/v1/_hub/status")


def test_the_hubs_subscription_probe_is_its_own() -> None:
    for user in (DEVICE, SCADA):
        assert not allowed(user, Action.SUBSCRIBE, "fp/v1/_hub/probe")
        assert not allowed(user, Action.PUBLISH, "fp/v1/_hub/probe")
    assert allowed(HUB, Action.SUBSCRIBE, "fp/v1/_hub/probe")


@pytest.mark.parametrize("flt", ["#", "$SYS/#", "fp/v1/#", "fp/v1/+/+/cmd", "+/v1/s1/d1/cmd",
                                 "fp/v1/s1/d1/#", "fp/v1/_hub/#"])
def test_wildcards_wider_than_a_devices_own_topics_are_refused(flt: str) -> None:
    assert not allowed(DEVICE, Action.SUBSCRIBE, flt)
    assert not allowed(SCADA, Action.SUBSCRIBE, flt)


def test_mosquitto_acl_renders_one_block_per_user_with_write_and_read_lines() -> None:
    text = mosquitto_acl({"d1": DEVICE, "hub": HUB, "scada": SCADA})
    assert "user d1\ntopic write fp/v1/s1/d1/status\n" in text
    assert "topic write fp/v1/s1/d1/points/#\ntopic read fp/v1/s1/d1/ack\n" in text
    assert "user hub\ntopic write fp/v1/#\ntopic read fp/v1/#\n" in text
    assert ("user scada\ntopic read fp/v1/s1/+/points/#\ntopic read fp/v1/s1/+/status\n"
            "topic read fp/v1/_hub/status\n") in text
    assert "topic write" not in text.split("user scada")[1]


# --- real amqtt broker --------------------------------------------------------------------------


@asynccontextmanager
async def client(broker: BrokerEndpoint, name: str, **kw: object) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(broker.host, broker.port, identifier=broker.users[name].client_id(str(next(_client_ids))),
                              
                              **broker.login(name), **kw) as c:  # type: ignore[arg-type]
        yield c


async def next_message(sub: aiomqtt.Client) -> aiomqtt.Message:
    async with asyncio.timeout(WAIT_S):
        return await anext(aiter(sub.messages))


async def assert_only_marker_arrives(sub: aiomqtt.Client, pub: aiomqtt.Client,
                                     marker_topic: str) -> None:
    """Publish a marker after the refused message: per-client ordering means the refused one would
    have arrived first, so seeing the marker first proves it never will (no timing guess)."""
    await pub.publish(marker_topic, b"marker", qos=1)
    message = await next_message(sub)
    assert (str(message.topic), message.payload) == (marker_topic, b"marker")


async def test_device_telemetry_reaches_the_hub(any_broker: BrokerEndpoint) -> None:
    async with client(any_broker, "hub") as hub, client(any_broker, "d1") as dev:
        await hub.subscribe("fp/v1/+/+/telemetry", qos=1)
        await dev.publish("fp/v1/s1/d1/telemetry", b"t=1", qos=1)
        message = await next_message(hub)
        assert (str(message.topic), message.payload) == ("fp/v1/s1/d1/telemetry", b"t=1")


async def test_device_publishing_as_another_device_never_reaches_subscribers(
    any_broker: BrokerEndpoint,
) -> None:
    async with client(any_broker, "hub") as hub, client(any_broker, "d1") as dev:
        await hub.subscribe("fp/v1/#", qos=1)
        await dev.publish("fp/v1/s1/d2/journal", b"forged", qos=1)
        await dev.publish("fp/v1/s1/d2/status", b"forged", qos=1)
        await dev.publish("fp/v1/s1/d1/ack", b"forged", qos=1)  # downstream: the hub's to write
        await assert_only_marker_arrives(hub, dev, "fp/v1/s1/d1/telemetry")


async def test_device_never_reads_another_devices_contracts(any_broker: BrokerEndpoint) -> None:
    async with client(any_broker, "hub") as hub, client(any_broker, "d1") as dev:
        codes = await dev.subscribe([("fp/v1/s1/d2/contract", 1), ("fp/v1/s1/d1/contract", 1)])
        if any_broker.kind == "amqtt":  # Mosquitto grants the SUBACK, then filters delivery
            assert [c.is_failure for c in codes] == [True, False]
        await hub.publish("fp/v1/s1/d2/contract", b"not yours", qos=1)
        await assert_only_marker_arrives(dev, hub, "fp/v1/s1/d1/contract")


async def test_integration_receives_points_but_cannot_publish(any_broker: BrokerEndpoint) -> None:
    async with client(any_broker, "scada") as scada, client(any_broker, "hub") as hub:
        await scada.subscribe("fp/v1/s1/+/points/#", qos=1)
        await hub.subscribe("fp/v1/#", qos=1)
        await scada.publish("fp/v1/s1/d1/points/level", b"999", qos=1)
        await assert_only_marker_arrives(hub, hub, "fp/v1/s1/d1/cmd")
        await hub.publish("fp/v1/s1/d1/points/level", b"4.2", qos=1)
        message = await next_message(scada)
        assert message.payload == b"4.2"


@pytest.mark.parametrize(("username", "password"), [("d1", "wrong"), ("nobody", "x"), (None, None)])
async def test_bad_credentials_are_refused_at_connect(
    any_broker: BrokerEndpoint, username: str | None, password: str | None
) -> None:
    with pytest.raises(aiomqtt.MqttCodeError):
        async with aiomqtt.Client(any_broker.host, any_broker.port, username=username,
                                  password=password):
            pass


async def test_a_will_on_another_devices_topic_is_refused_at_connect(
    amqtt_broker: BrokerEndpoint,
) -> None:
    will = aiomqtt.Will("fp/v1/s1/d2/status", b"offline", 1, True)
    with pytest.raises(aiomqtt.MqttCodeError):
        async with client(amqtt_broker, "d1", will=will):
            pass


async def test_embedded_broker_reports_its_bound_port_and_rebinds_it_after_restart() -> None:
    users = fleet_specs()
    async with EmbeddedBroker(users=users) as first:
        port = first.port
        assert port > 0
        assert first.url == f"mqtt://127.0.0.1:{port}"
    async with EmbeddedBroker(port=port, users=users) as second:
        assert second.port == port


def test_port_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = EmbeddedBroker(users={}).port


def test_shipped_mosquitto_acl_example_is_what_mosquitto_acl_renders() -> None:
    example = (Path(__file__).parents[2] / "hub" / "acl" / "mosquitto.acl.example").read_text()
    site = "north-field"
    users = {
        "hub": HUB,
        "pump-station-7": UserSpec(password_hash="-", role=BrokerRole.DEVICE, site=site, device="pump-station-7"),
        "chiller-2": UserSpec(password_hash="-", role=BrokerRole.DEVICE, site=site, device="chiller-2"),
        "scada": UserSpec(password_hash="-", role=BrokerRole.INTEGRATION, sites=(site,)),
    }
    body = [line for line in example.splitlines() if not line.startswith("#")]
    rendered = [line for line in mosquitto_acl(users).splitlines() if not line.startswith("#")]
    assert body == rendered


@pytest.mark.parametrize(("login", "user", "client_id", "ok"), [
    ("hub", HUB, "fieldpact-hub", True),
    ("hub", HUB, "fieldpact-hub/debug", True),
    ("hub", HUB, "fieldpact-hub/", False),
    ("hub", HUB, "fieldpact-hubx", False),
    ("d1", DEVICE, "fp-agent-d1", True),
    ("d1", DEVICE, "fp-agent-d1/2", True),
    ("d1", DEVICE, "fp-agent-d10", False),  # another device's base id
    ("d1", DEVICE, "fieldpact-hub", False),
    ("scada", SCADA, "fp-int-scada", True),
    ("scada", SCADA, "fp-int-scada/a/b", True),
    ("scada", SCADA, "fp-agent-d1", False),
])
def test_client_ids_are_bound_to_logins(login: str, user: UserSpec, client_id: str, ok: bool) -> None:
    assert client_id_allowed(login, user, client_id) is ok
