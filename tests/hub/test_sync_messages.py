"""Message → meaning (hub/sync/messages.py), alone: topics routed, payloads decoded, unreadable
payloads the peer's fault."""
from __future__ import annotations

import pytest

from contracts.chain import GENESIS
from contracts.topics import Channel, topic
from contracts.wire import Ack, Birth, ContractResult, JournalBatch, Telemetry
from hub.errors import PeerFault, RemoteProtocolError
from hub.sync.messages import Journal, Offline, decode, meaning, route

BIRTH = Birth(device="d1", site="s1", boot_id="b1", contract=None, version=None, last_seq=0)


def test_topics_the_hub_does_not_handle_mean_nothing() -> None:
    assert route("not/a/topic") is None
    assert route(topic("s1", "d1", Channel.ACK)) is None  # the hub's own channel to devices
    assert decode(topic("s1", "d1", Channel.CMD), b"x") is None
    parts = route(topic("s1", "d1", Channel.JOURNAL))
    assert parts is not None and (parts.site, parts.device, parts.channel) == (
        "s1", "d1", Channel.JOURNAL)


def test_each_channel_decodes_to_its_wire_type() -> None:
    tel = Telemetry(ts_ms=1, values=(("level", 1.5),), mode="idle", step=None, seq=0)
    result = ContractResult(contract="c", version=1, accepted=True, refusal=None, detail="ok")
    batch = JournalBatch(device="d1", from_seq=1, to_seq=0, prev_hash=GENESIS, entries=())
    assert meaning(Channel.STATUS, b"offline") == Offline()
    assert meaning(Channel.STATUS, BIRTH.to_bytes()) == BIRTH
    assert meaning(Channel.TELEMETRY, tel.to_bytes()) == tel
    assert meaning(Channel.CONTRACT_RESULT, result.to_bytes()) == result
    payload = batch.to_bytes()
    assert meaning(Channel.JOURNAL, payload) == Journal(batch=batch, nbytes=len(payload))


def test_an_unreadable_payload_is_a_remote_protocol_error_naming_the_device() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(topic("s1", "d1", Channel.TELEMETRY), Ack(seq=1).to_bytes())
    assert (info.value.fault, info.value.device) == (PeerFault.UNREADABLE, "d1")
    assert info.value.detail.startswith("telemetry: ")


def test_asking_for_a_channel_the_hub_does_not_handle_is_our_bug() -> None:
    with pytest.raises(ValueError, match="not one the hub handles"):
        meaning(Channel.ACK, b"")
