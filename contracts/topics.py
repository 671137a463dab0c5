"""The MQTT topic scheme shared by agent, hub and broker ACL. Pure: no broker, no I/O.

Rules:
- Every topic is `fp/v1/{site}/{device}/{channel}`; `points` carries one more level, the point name:
  `fp/v1/{site}/{device}/points/{name}`. `contract/result` and `commission/report` are two-level
  channels.
- Site, device and point names are single topic levels: never empty, and never containing `/`
  (level separator), `+` or `#` (wildcards, MQTT 3.1.1 section 4.7.1), or NUL (forbidden in any
  UTF-8 MQTT string, section 1.5.3).
- One topic is not per device: `fp/v1/_hub/status`, the hub's retained birth (CBOR HubBirth) or
  its last will `offline`. It has four levels, so no device filter (`fp/v1/+/+/…`) matches it.
- `matches` and `covers` follow MQTT 3.1.1 section 4.7: `+` matches exactly one level, `#` matches
  the parent level and any number of children and must be last; a filter starting with a wildcard
  never matches a topic starting with `$` (section 4.7.2).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

PREFIX = "fp/v1"
"""Namespace and wire version; a breaking change to the scheme bumps `v1` so old agents stay apart."""

_FORBIDDEN = ("/", "+", "#", "\x00")

HUB_STATUS = f"{PREFIX}/_hub/status"
"""The hub's retained birth (contracts.wire.HubBirth) and its last will b"offline". Every device and
integration may read it; only the hub may write it (hub/broker.py ACL)."""

HUB_PROBE = f"{PREFIX}/_hub/probe"
"""The hub publishes here and reads it back to prove its subscriptions are in force (MqttLink
probe); no other login may read or write it."""


class Channel(enum.StrEnum):
    """What a topic carries; the value is the topic suffix after the device level."""

    STATUS = "status"
    JOURNAL = "journal"
    ACK = "ack"
    CONTRACT = "contract"
    CONTRACT_RESULT = "contract/result"
    CMD = "cmd"
    TELEMETRY = "telemetry"
    POINTS = "points"
    COMMISSION = "commission"                # hub -> agent: a commissioning request
    COMMISSION_REPORT = "commission/report"  # agent -> hub: its answer (contracts/commission_wire.py)


@dataclass(frozen=True, kw_only=True)
class TopicParts:
    """A parsed topic. `point` is set for Channel.POINTS only."""

    site: str
    device: str
    channel: Channel
    point: str | None = None


def check_id(part: str, value: str) -> str:
    """Return `value` if usable as one topic level. Raises ValueError naming `part` otherwise."""
    if not value:
        raise ValueError(f"{part}: must not be empty")
    bad = [c for c in _FORBIDDEN if c in value]
    if bad:
        raise ValueError(f"{part}: {value!r} contains forbidden character {bad[0]!r}")
    return value


def topic(site: str, device: str, channel: Channel, point: str | None = None) -> str:
    """Build a topic. Raises ValueError for a bad id, or a point given (or missing) wrongly."""
    base = f"{PREFIX}/{check_id('site', site)}/{check_id('device', device)}/{channel.value}"
    if channel is Channel.POINTS:
        if point is None:
            raise ValueError("point: required for channel points")
        return f"{base}/{check_id('point', point)}"
    if point is not None:
        raise ValueError(f"point: {point!r} given for channel {channel.value}, which has none")
    return base


def parse(text: str) -> TopicParts:
    """Split a concrete topic into its parts. Raises ValueError naming the part that is wrong."""
    levels = text.split("/")
    if len(levels) < 5:
        raise ValueError(f"topic: {text!r} has {len(levels)} levels, expected at least 5")
    if "/".join(levels[:2]) != PREFIX:
        raise ValueError(f"prefix: {'/'.join(levels[:2])!r} in {text!r}, expected {PREFIX!r}")
    site, device = check_id("site", levels[2]), check_id("device", levels[3])
    channel, point = _parse_channel(levels[4:], text)
    return TopicParts(site=site, device=device, channel=channel, point=point)


def _parse_channel(rest: list[str], text: str) -> tuple[Channel, str | None]:
    if rest[0] == Channel.POINTS.value and len(rest) == 2:
        return Channel.POINTS, check_id("point", rest[1])
    try:
        channel = Channel("/".join(rest))
    except ValueError as exc:
        raise ValueError(f"channel: {'/'.join(rest)!r} in {text!r} is not a known channel") from exc
    if channel is Channel.POINTS:
        raise ValueError(f"point: missing in {text!r}")
    return channel, None


def check_filter(flt: str) -> list[str]:
    """Split a topic filter into levels. Raises ValueError if its wildcards break section 4.7.1."""
    if not flt:
        raise ValueError("filter: must not be empty")
    levels = flt.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(f"filter: {flt!r} has '#' that is not the whole last level")
        if "+" in level and level != "+":
            raise ValueError(f"filter: {flt!r} has '+' that is not a whole level")
    return levels


def matches(flt: str, text: str) -> bool:
    """True if concrete topic `text` matches filter `flt`. Raises ValueError for a bad filter."""
    want = check_filter(flt)
    if text.startswith("$") and want[0] in ("+", "#"):
        return False
    return _levels_cover(want, text.split("/"))


def covers(allowed: str, requested: str) -> bool:
    """True if every topic matching filter `requested` also matches filter `allowed`.

    Used by the ACL for SUBSCRIBE: a client may subscribe to a filter only if it is no wider than
    what it is allowed to read. Raises ValueError for a malformed filter.
    """
    return _levels_cover(check_filter(allowed), check_filter(requested))


def _levels_cover(allowed: list[str], requested: list[str]) -> bool:
    for index, level in enumerate(allowed):
        if level == "#":
            return True  # '#' also matches the parent level (section 4.7.1.2)
        if index >= len(requested) or requested[index] == "#":
            return False
        if level not in ("+", requested[index]):
            return False
    return len(requested) == len(allowed)


def device_filter(site: str, device: str) -> str:
    """Filter for everything about one device. Raises ValueError for a bad id."""
    return f"{PREFIX}/{check_id('site', site)}/{check_id('device', device)}/#"


def hub_filters() -> tuple[str, ...]:
    """Filters the hub subscribes to: what every device sends up."""
    upstream = (Channel.STATUS, Channel.JOURNAL, Channel.CONTRACT_RESULT, Channel.TELEMETRY,
                Channel.COMMISSION_REPORT)
    return tuple(f"{PREFIX}/+/+/{channel.value}" for channel in upstream)
