"""Message → meaning: a topic and its payload decoded into what the device said — pure.

Rules (invariant 10):
- The topic names the sender (site, device) and the channel; the payload is decoded by the wire
  type of that channel (contracts/wire.py bounds size, depth and count before parsing).
- A topic the hub does not handle (unparsable, or a channel devices do not send on) means
  nothing: `decode` returns None and the message is dropped without a word (devices cannot
  publish there; the broker's ACL already refused them).
- A payload that does not decode is the peer's fault: RemoteProtocolError(UNREADABLE), logged and
  counted by the dispatcher, never raised out of it.
- What the message then changes is decided by the handlers, after its claims are checked
  (hub/claims.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from contracts.commission_wire import CommissionReply
from contracts.errors import EncodingError
from contracts.topics import Channel, TopicParts, parse
from contracts.journal_wire import JournalRows, decode_journal
from contracts.wire import Birth, ContractResult, Telemetry
from hub.errors import PeerFault, RemoteProtocolError

OFFLINE_PAYLOAD = b"offline"
"""The status payload of a last will (the agent's and the hub's own): not CBOR, by design, so a
site integration can read it."""

HANDLED = (Channel.STATUS, Channel.JOURNAL, Channel.TELEMETRY, Channel.CONTRACT_RESULT,
           Channel.COMMISSION_REPORT)
"""The channels devices publish on that the hub subscribes to (contracts.topics.hub_filters)."""


@dataclass(frozen=True, kw_only=True)
class Offline:
    """A device's last will: the broker says it is gone."""


@dataclass(frozen=True, kw_only=True)
class Journal:
    """A journal batch and its size on the wire (the out-of-order buffer is bounded in bytes)."""

    batch: JournalRows  # either wire form, as rows (contracts/journal_wire.py)
    nbytes: int


Meaning = Birth | Offline | Journal | Telemetry | ContractResult | CommissionReply


@dataclass(frozen=True, kw_only=True)
class Inbound:
    parts: TopicParts
    meaning: Meaning


def route(topic_name: str) -> TopicParts | None:
    """The parts of a topic the hub handles, else None."""
    try:
        parts = parse(topic_name)
    except ValueError:
        return None
    return parts if parts.channel in HANDLED else None


def meaning(channel: Channel, payload: bytes) -> Meaning:
    """What a payload on `channel` says. Raises RemoteProtocolError(UNREADABLE) if it does not
    decode, and ValueError for a channel the hub does not handle (a caller's bug)."""
    try:
        if channel is Channel.STATUS:
            return Offline() if payload == OFFLINE_PAYLOAD else Birth.from_bytes(payload)
        if channel is Channel.JOURNAL:
            return Journal(batch=decode_journal(payload), nbytes=len(payload))
        if channel is Channel.TELEMETRY:
            return Telemetry.from_bytes(payload)
        if channel is Channel.CONTRACT_RESULT:
            return ContractResult.from_bytes(payload)
        if channel is Channel.COMMISSION_REPORT:
            return CommissionReply.from_bytes(payload)
    except (EncodingError, ValueError) as exc:
        raise RemoteProtocolError(PeerFault.UNREADABLE, None, f"{channel.value}: {exc}") from exc
    raise ValueError(f"channel {channel.value!r} is not one the hub handles")


def decode(topic_name: str, payload: bytes) -> Inbound | None:
    """A message as the hub understands it, or None for a topic it does not handle. Raises
    RemoteProtocolError(UNREADABLE) for a payload that does not decode."""
    parts = route(topic_name)
    if parts is None:
        return None
    try:
        return Inbound(parts=parts, meaning=meaning(parts.channel, payload))
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(exc.fault, parts.device, exc.detail) from exc.__cause__
