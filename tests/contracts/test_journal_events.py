"""Typed journal bodies: a view over the same CBOR maps, with errors that name the field."""
from __future__ import annotations

from typing import Any

import pytest

from contracts.chain import GENESIS, EntryKind, entry_hash, make_entry
from contracts.engine_state import EngineState, Event, EventKind, Mode
from contracts.inputs import Command, CommandKind
from contracts.journal_events import (
    ENGINE_EVENT_KIND, AdapterFaultBody, AgentEvent, BodyError, BootBody, CommandBody,
    ContractBody, ContractChange, EventBody, GapBody, HubGapBody, InputBody, KeyframeBody,
    OutputBody, RefusalBody, StepBody, TripBody, agent_event_body, decode, decode_entry, encode,
    engine_event_body, item,
)
from contracts.errors import EncodingError, Refusal

STATE = EngineState(mode=Mode.RUNNING, step_index=1, step_started_ms=5, outputs=(("pump", 1.5),),
                    targets=(("pump", 2.0),)).to_mapping()

AGENT_BODIES: list[tuple[EntryKind, dict[str, Any]]] = [
    (EntryKind.BOOT, {"boot_id": "ab12", "t0_ms": 1_000, "period_ms": 100, "contract": "tank-fill",
                      "version": 3, "hash": "ff00", "state": STATE, "resumed": False}),
    (EntryKind.INPUT, {"values": {"level": [3.5, "good", None], "flow": [None, "bad", "timeout"]}}),
    (EntryKind.KEYFRAME, {"values": {"level": [3.9, "good", None]}, "outputs": {"pump": 1200},
                          "mode": "running", "step": "fill"}),
    (EntryKind.KEYFRAME, {"values": {}, "outputs": {}, "mode": "pending", "step": None}),
    (EntryKind.OUTPUT, {"writes": {"pump": 1200, "valve": True}}),
    (EntryKind.STEP, {"event": "step_entered", "step": "fill", "index": 0}),
    (EntryKind.TRIP, {"event": "guard_trip", "point": "level", "reason": "stale", "value": None,
                      "limit": None, "detail": "x"}),
    (EntryKind.REFUSAL, {"event": "command_refused", "command": "c1", "kind": "resume",
                         "reason": "stale"}),
    (EntryKind.REFUSAL, {"event": "stored_contract_refused", "hash": "ff", "refusal": "expired",
                         "detail": "d"}),
    (EntryKind.EVENT, {"event": "safe_unconfirmed", "points": ["pump"], "since_ms": 1,
                       "attempts": 2}),
    (EntryKind.EVENT, {"event": "output_sync", "writes": {"pump": 0}}),
    (EntryKind.CONTRACT, {"event": "accepted", "contract": "tank-fill", "version": 3,
                          "hash": "ff", "signed": b"\x01\x02"}),
    (EntryKind.CONTRACT, {"event": "refused", "refusal": "expired", "detail": "too late"}),
    (EntryKind.CONTRACT, {"event": "expiry_due", "contract": "c", "version": 1, "hash": "ff"}),
    (EntryKind.COMMAND, {"kind": "write", "id": "w1", "point": "pump", "value": 10}),
    (EntryKind.COMMAND, {"kind": "hold", "id": "h1", "point": None, "value": None}),
    (EntryKind.CONNECTIVITY, {"online": False, "last_contact_ms": 900}),
    (EntryKind.ADAPTER_FAULT, {"category": "adapters", "what": "read", "reason": "timeout",
                               "point": "level"}),
    (EntryKind.ADAPTER_FAULT, {"category": "adapters", "what": "read", "point": "level", "code": 2,
                               "reason": "exception 2 (illegal data address) at holding 63",
                               "v": 2}),
    (EntryKind.OUTPUT, {"writes": {"pump": 1200}, "of": "tank-pump", "v": 2}),
    (EntryKind.STEP, {"event": "step_entered", "step": "fill", "index": 0, "of": "tank-pump",
                      "v": 2}),
    (EntryKind.ADAPTER_FAULT, {"category": "adapters", "what": "read", "reason": "timeout",
                               "point": "level", "of": "tank-pump", "v": 2}),
    (EntryKind.OVERRUN, {"late_ms": 250, "skipped": 2, "resume_ms": 1_300}),
    (EntryKind.GAP, {"dropped_from": 1, "dropped_to": 9, "reason": "over hard limit"}),
    (EntryKind.GAP, {"missing_from": 4, "missing_to": 6, "reason": "r", "recorded_by": "hub"}),
]


@pytest.mark.parametrize(("kind", "body"), AGENT_BODIES, ids=lambda v: str(v)[:30])
def test_every_body_the_agent_writes_decodes_and_encodes_back_to_the_same_map(
        kind: EntryKind, body: dict[str, Any]) -> None:
    record = decode(kind, body)
    assert record.KIND is kind
    assert encode(record) == body
    assert entry_hash(GENESIS, 1, 5, kind, encode(record)) == entry_hash(GENESIS, 1, 5, kind, body)


def test_a_decoded_record_is_typed() -> None:
    boot = decode(EntryKind.BOOT, AGENT_BODIES[0][1])
    assert isinstance(boot, BootBody) and boot.state.mode is Mode.RUNNING
    key = decode(EntryKind.KEYFRAME, AGENT_BODIES[2][1])
    assert isinstance(key, KeyframeBody) and key.mode is Mode.RUNNING
    assert key.readings(7)["level"].ts_ms == 7
    cmd = decode(EntryKind.COMMAND, AGENT_BODIES[14][1])
    assert cmd == CommandBody(command=Command(kind=CommandKind.WRITE, id="w1", point="pump", value=10))
    refused = decode(EntryKind.CONTRACT, AGENT_BODIES[12][1])
    assert refused == ContractBody(event=ContractChange.REFUSED, refusal=Refusal.EXPIRED,
                                   detail="too late")
    assert isinstance(decode(EntryKind.GAP, AGENT_BODIES[-1][1]), HubGapBody)
    assert isinstance(decode(EntryKind.GAP, AGENT_BODIES[-2][1]), GapBody)


def test_event_names_read_as_the_engines_or_the_agents_members() -> None:
    trip = decode(EntryKind.TRIP, AGENT_BODIES[6][1])
    assert isinstance(trip, TripBody) and trip.event is EventKind.GUARD_TRIP
    assert trip.get("point") == "level" and trip.get("absent") is None
    note = decode(EntryKind.EVENT, AGENT_BODIES[9][1])
    assert note.event is AgentEvent.SAFE_UNCONFIRMED  # type: ignore[union-attr]


def test_an_event_name_this_build_does_not_know_is_kept_as_its_string() -> None:
    record = decode(EntryKind.EVENT, {"event": "from_a_newer_agent", "n": 1})
    assert isinstance(record, EventBody) and record.event == "from_a_newer_agent"
    assert encode(record) == {"event": "from_a_newer_agent", "n": 1}


def test_every_engine_event_gets_the_entry_kind_the_table_gives() -> None:
    for kind in EventKind:
        body = engine_event_body(Event(kind=kind, ts_ms=1, fields=(("reason", "r"),)))
        assert body.KIND is ENGINE_EVENT_KIND.get(kind, EntryKind.EVENT)
        assert encode(body) == {"event": kind.value, "reason": "r"}
    assert isinstance(engine_event_body(Event(kind=EventKind.COMPLETED, ts_ms=1)), StepBody)
    assert isinstance(engine_event_body(Event(kind=EventKind.WRITE_REFUSED, ts_ms=1)), RefusalBody)


def test_the_agents_own_events_are_events_except_a_stored_contract_refused() -> None:
    assert isinstance(agent_event_body(AgentEvent.STORED_CONTRACT_REFUSED, hash="h"), RefusalBody)
    started = agent_event_body(AgentEvent.AGENT_STARTED, boot_id="b")
    assert item(started, 9) == (EntryKind.EVENT, {"event": "agent_started", "boot_id": "b"}, 9)


def test_item_and_decode_entry_round_trip_through_a_chain_entry() -> None:
    body = OutputBody(writes={"pump": 3})
    kind, plain, ts = item(body, 42)
    assert decode_entry(make_entry(GENESIS, 1, ts, kind, plain)) == body


@pytest.mark.parametrize(("kind", "body", "message"), [
    (EntryKind.OUTPUT, {}, "output body: writes=None is missing"),
    (EntryKind.OUTPUT, {"writes": {"pump": "fast"}}, "output body: writes.pump='fast' must be a point value"),
    (EntryKind.OUTPUT, {"writes": {}, "extra": 1}, "output body: extra=1 is not a field of this kind"),
    (EntryKind.OUTPUT, {"writes": {}, "v": 3}, "output body: v=3 is not a version this build reads (1, 2)"),
    (EntryKind.OUTPUT, {"writes": {}, "v": "2"}, "output body: v='2' is not a version this build reads"),
    (EntryKind.ADAPTER_FAULT, {"category": "adapters", "what": "read", "reason": "r", "point": None,
                               "code": 2}, "adapter_fault body: code=2 is not a field of this kind"),
    (EntryKind.INPUT, {"values": {"level": [1.0, "good"]}}, "input body: values.level=[1.0, 'good'] must be"),
    (EntryKind.KEYFRAME, {"values": {}, "outputs": {}, "mode": "sleepy", "step": None},
     "keyframe body: mode='sleepy' is not an engine mode"),
    (EntryKind.BOOT, {**AGENT_BODIES[0][1], "t0_ms": "soon"}, "boot body: t0_ms='soon' must be an integer"),
    (EntryKind.BOOT, {**AGENT_BODIES[0][1], "state": {"v": 9}}, "boot body: state={'v': 9} engine state v=9"),
    (EntryKind.CONTRACT, {"event": "eaten"}, "contract body: event='eaten' is not a ContractChange"),
    (EntryKind.COMMAND, {"kind": "jump", "id": "x"}, "command body: kind='jump' is not a CommandKind"),
    (EntryKind.ADAPTER_FAULT, {"reason": "timeout"}, "adapter_fault body: category=None is missing"),
    (EntryKind.STEP, {"step": "fill"}, "step body: event=None is missing"),
    (EntryKind.STEP, ["not", "a", "map"], "step body: (body)=['not', 'a', 'map'] must be a map"),
    (EntryKind.CHECKPOINT, {}, "checkpoint body: (kind)='checkpoint' has no body"),
    ("nonsense", {}, "nonsense body: (kind)='nonsense' is not an entry kind"),
])
def test_a_malformed_body_is_refused_naming_the_kind_and_the_field(
        kind: EntryKind | str, body: Any, message: str) -> None:
    with pytest.raises(BodyError, match=None) as info:
        decode(kind, body)
    assert str(info.value).startswith(message), str(info.value)
    assert isinstance(info.value, EncodingError)


def test_an_error_quotes_a_huge_value_bounded() -> None:
    with pytest.raises(BodyError) as info:
        decode(EntryKind.OVERRUN, {"late_ms": "x" * 100_000, "skipped": 1, "resume_ms": 2})
    assert len(str(info.value)) < 200 and info.value.field == "late_ms"


def test_records_are_frozen_views() -> None:
    record = InputBody(values={"level": [1.0, "good", None]})
    with pytest.raises(TypeError):
        record.values["x"] = [0, "good", None]  # type: ignore[index]
    with pytest.raises(ValueError, match="'event' is the name"):
        EventBody(event=AgentEvent.JOURNAL_HOLE, fields={"event": "x"})
    assert AdapterFaultBody(what="read", reason="timeout").point is None


# -- several contracts per agent: the contract tag ----------------------------------------------

def test_a_tagged_body_reads_back_its_contract_and_encodes_to_the_same_map() -> None:
    from contracts.journal_events import CONTRACT_TAG, tag_items

    items = tag_items([item(OutputBody(writes={"pump": 1}), 10),
                       item(StepBody(event=EventKind.STEP_ENTERED, fields={"step": "fill"}), 10),
                       item(ContractBody(event=ContractChange.ACTIVATED, contract="a", version=1,
                                         hash="h"), 10)], "tank-pump")
    bodies = [body for _, body, _ in items]
    assert [b.get(CONTRACT_TAG) for b in bodies] == ["tank-pump", "tank-pump", None]
    for kind, body, _ in items:
        record = decode(kind, body)
        assert encode(record) == body
    assert decode(EntryKind.OUTPUT, bodies[0]).contract == "tank-pump"  # type: ignore[union-attr]
    assert decode(EntryKind.OUTPUT, {"writes": {"pump": 1}}).contract is None  # type: ignore[union-attr]


def test_the_tag_is_never_an_event_field_and_must_be_a_string() -> None:
    with pytest.raises(ValueError, match="contract tag"):
        EventBody(event=AgentEvent.JOURNAL_HOLE, fields={"of": "x"})
    with pytest.raises(BodyError, match="of=3 must be a string"):
        decode(EntryKind.OUTPUT, {"writes": {}, "of": 3})


# -- the version rule for the tag (version 2) ---------------------------------------------------

def test_a_tagged_body_is_written_as_version_2_and_an_untagged_one_keeps_version_1s_bytes() -> None:
    from contracts.journal_events import BODY_VERSION, READ_VERSIONS, tag_items

    assert BODY_VERSION == 2 and READ_VERSIONS == {1, 2}
    tagged = tag_items([item(OutputBody(writes={"pump": 1}), 10),
                        item(ContractBody(event=ContractChange.ACTIVATED, contract="a", version=1,
                                          hash="h"), 10)], "tank-pump")
    assert [b.get("v") for _, b, _ in tagged] == [2, None]  # a CONTRACT body is never tagged
    assert encode(OutputBody(writes={"pump": 1}, contract="tank-pump")) == tagged[0][1]
    assert encode(OutputBody(writes={"pump": 1})) == {"writes": {"pump": 1}}  # no "v": version 1
    assert "v" not in encode(agent_event_body(AgentEvent.AGENT_STARTED, boot_id="b"))
    fault = AdapterFaultBody(what="read", reason="exception 2 (illegal data address) at input 9",
                             point="level", code=2)
    assert encode(fault)["v"] == 2 and decode(EntryKind.ADAPTER_FAULT, encode(fault)) == fault
    with pytest.raises(ValueError, match="body version"):
        EventBody(event=AgentEvent.JOURNAL_HOLE, fields={"v": 2})


def test_a_journal_written_before_the_rule_with_tags_in_version_1_still_verifies_and_reads() -> None:
    """Between several contracts per agent and the version rule for the tag, the agent wrote the
    tag without a "v" key: those journals verify (their stored bytes are hashed) and read the
    same, tag included."""
    from contracts.chain import verify_chain

    old = [(EntryKind.OUTPUT, {"writes": {"pump": 1}, "of": "tank-pump"}),
           (EntryKind.STEP, {"event": "step_entered", "step": "fill", "index": 0, "of": "tank-pump"}),
           (EntryKind.ADAPTER_FAULT, {"category": "adapters", "what": "read",
                                      "reason": "exception:2", "point": "level", "of": "tank-valve"}),
           (EntryKind.INPUT, {"values": {"level": [1.0, "good", None]}})]
    entries, prev = [], GENESIS
    for seq, (kind, body) in enumerate(old, 1):
        entries.append(make_entry(prev, seq, 100 * seq, kind, body))
        prev = entries[-1].hash
    assert entries[0].hash == make_entry(GENESIS, 1, 100, *old[0]).hash
    assert verify_chain(entries, GENESIS, 0) is None
    records = [decode_entry(e) for e in entries]
    assert [getattr(r, "contract") for r in records] == ["tank-pump", "tank-pump", "tank-valve", None]
    fault = records[2]
    assert isinstance(fault, AdapterFaultBody) and fault.code is None and fault.reason == "exception:2"
