"""The topic scheme and MQTT wildcard semantics, broker-free."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.topics import (
    Channel,
    TopicParts,
    covers,
    device_filter,
    hub_filters,
    matches,
    parse,
    topic,
)

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12)


def test_topic_builds_the_documented_scheme() -> None:
    assert topic("north", "pump-7", Channel.STATUS) == "fp/v1/north/pump-7/status"
    assert topic("north", "pump-7", Channel.CONTRACT_RESULT) == "fp/v1/north/pump-7/contract/result"
    assert topic("n", "d", Channel.POINTS, "level") == "fp/v1/n/d/points/level"


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", "x\x00"])
def test_topic_refuses_ids_that_are_not_one_plain_level(bad: str) -> None:
    with pytest.raises(ValueError, match="site"):
        topic(bad, "d", Channel.STATUS)
    with pytest.raises(ValueError, match="device"):
        topic("s", bad, Channel.STATUS)
    with pytest.raises(ValueError, match="point"):
        topic("s", "d", Channel.POINTS, bad)


def test_topic_requires_a_point_exactly_for_the_points_channel() -> None:
    with pytest.raises(ValueError, match="point: required"):
        topic("s", "d", Channel.POINTS)
    with pytest.raises(ValueError, match="point: 'x' given"):
        topic("s", "d", Channel.TELEMETRY, "x")


@given(site=ids, device=ids, channel=st.sampled_from(list(Channel)), point=ids)
def test_parse_inverts_topic(site: str, device: str, channel: Channel, point: str) -> None:
    pt = point if channel is Channel.POINTS else None
    parts = parse(topic(site, device, channel, pt))
    assert parts == TopicParts(site=site, device=device, channel=channel, point=pt)


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("fp/v1/s/d", "topic"),
        ("fp/v2/s/d/status", "prefix"),
        ("fp/v1//d/status", "site"),
        ("fp/v1/s/+/status", "device"),
        ("fp/v1/s/d/nope", "channel"),
        ("fp/v1/s/d/status/extra", "channel"),
        ("fp/v1/s/d/points", "point"),
        ("fp/v1/s/d/points/", "point"),
    ],
)
def test_parse_names_the_part_that_is_wrong(text: str, part: str) -> None:
    with pytest.raises(ValueError, match=f"^{part}:"):
        parse(text)


@pytest.mark.parametrize(
    ("flt", "text", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+", "a", False),
        ("a/#", "a", True),  # '#' matches the parent level (4.7.1.2)
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+/+", "/x", True),  # '+' matches an empty level
        ("+", "a/b", False),
        ("#", "$SYS/x", False),  # wildcard-first filters skip '$' topics (4.7.2)
        ("$SYS/#", "$SYS/x", True),
        ("fp/v1/+/+/points/#", "fp/v1/s/d/points/level", True),
        ("fp/v1/+/+/points/#", "fp/v1/s/d/telemetry", False),
    ],
)
def test_matches_follows_mqtt_wildcards(flt: str, text: str, expected: bool) -> None:
    assert matches(flt, text) is expected


@pytest.mark.parametrize("bad", ["", "a/#/b", "a#", "a/b+", "+a"])
def test_matches_refuses_malformed_filters(bad: str) -> None:
    with pytest.raises(ValueError, match="filter"):
        matches(bad, "a/b")


@pytest.mark.parametrize(
    ("allowed", "requested", "expected"),
    [
        ("fp/v1/#", "fp/v1/+/+/status", True),
        ("fp/v1/#", "#", False),
        ("fp/v1/s/d/ack", "fp/v1/s/d/ack", True),
        ("fp/v1/s/d/ack", "fp/v1/s/d/+", False),
        ("fp/v1/s/d/ack", "fp/v1/s/d/#", False),
        ("fp/v1/+/+/status", "fp/v1/s/d/status", True),
        ("fp/v1/+/+/status", "fp/v1/+/+/#", False),
        ("fp/v1/+/+/points/#", "fp/v1/s/+/points/level", True),
    ],
)
def test_covers_means_requested_filter_is_no_wider(allowed: str, requested: str, expected: bool) -> None:
    assert covers(allowed, requested) is expected


@given(site=ids, device=ids, channel=st.sampled_from(list(Channel)))
def test_device_filter_matches_every_topic_of_that_device_only(
    site: str, device: str, channel: Channel
) -> None:
    pt = "p" if channel is Channel.POINTS else None
    assert matches(device_filter(site, device), topic(site, device, channel, pt))
    assert not matches(device_filter(site, device), topic(site, device + "x", channel, pt))


def test_hub_filters_take_upstream_channels_and_no_downstream_ones() -> None:
    def hub_sees(channel: Channel) -> bool:
        return any(matches(f, topic("s", "d", channel)) for f in hub_filters())

    assert all(hub_sees(c) for c in (Channel.STATUS, Channel.JOURNAL, Channel.CONTRACT_RESULT,
                                      Channel.TELEMETRY))
    assert not any(hub_sees(c) for c in (Channel.ACK, Channel.CONTRACT, Channel.CMD))
