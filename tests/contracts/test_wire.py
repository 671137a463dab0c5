"""MQTT payloads: round trips, and refusal of other kinds, versions and malformed fields."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.codec import canonical_dumps, decode_message, encode_message
from contracts.errors import EncodingError
from contracts.inputs import Command, CommandKind
from contracts.wire import (Ack, Birth, CommandMessage, ContractResult, HubBirth, JournalBatch,
                            Telemetry)

ENTRY = {"seq": 5, "ts_ms": 1_700_000_000_000, "kind": "step", "body": {"step": "fill"},
         "hash": b"\x01" * 32}

MESSAGES = [
    Birth(device="pump-station-7", site="north-field", boot_id="b-1", contract="tank-fill",
          version=3, last_seq=41, labels=(("zone", "b"), ("area", "tanks"))),
    Birth(device="pump-station-7", site="north-field", boot_id="b-2", contract=None, version=None,
          last_seq=0),
    JournalBatch(device="pump-station-7", from_seq=5, to_seq=6, prev_hash=b"\x00" * 32,
                 entries=(ENTRY, {**ENTRY, "seq": 6}), dropped_through=2),
    JournalBatch(device="pump-station-7", from_seq=9, to_seq=8, prev_hash=b"\x02" * 32, entries=()),
    JournalBatch(device="pump-station-7", from_seq=4, to_seq=9, prev_hash=b"\x00" * 32,
                 entries=(ENTRY, {**ENTRY, "seq": 6}, {**ENTRY, "seq": 9}), gaps=((4, 4), (7, 8))),
    Ack(seq=6),
    HubBirth(boot="0f" * 16, ts_ms=1_700_000_000_000),
    ContractResult(contract="tank-fill", version=3, accepted=True, refusal=None, detail=""),
    ContractResult(contract="tank-fill", version=2, accepted=False, refusal="older_version",
                   detail="tank-fill version 2 is older than accepted 3"),
    CommandMessage(command=Command(kind=CommandKind.WRITE, id="c-9", point="pump_speed", value=750)),
    CommandMessage(command=Command(kind=CommandKind.HOLD, id="c-10")),
    Telemetry(ts_ms=1_700_000_000_100, values=(("pump_speed", 1200.0), ("level", 2), ("valve", True)),
              mode="running", step="fill", seq=77),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_message_round_trips_through_bytes(message: object) -> None:
    assert type(message).from_bytes(message.to_bytes()) == message  # type: ignore[attr-defined]


def test_pair_order_survives_encoding() -> None:
    decoded = Telemetry.from_bytes(MESSAGES[-1].to_bytes())
    assert [name for name, _ in decoded.values] == ["pump_speed", "level", "valve"]


def test_message_of_another_kind_is_refused() -> None:
    with pytest.raises(EncodingError, match="'ack' where 'birth' was expected"):
        Birth.from_bytes(Ack(seq=1).to_bytes())


def test_message_of_a_future_version_is_refused() -> None:
    data = encode_message("ack", 2, {"seq": 1})
    with pytest.raises(EncodingError, match=r"'ack' version 2 is not supported \(this build reads 1\)"):
        Ack.from_bytes(data)


def test_missing_field_is_named() -> None:
    with pytest.raises(EncodingError, match="'telemetry' field 'seq': is missing"):
        Telemetry.from_bytes(encode_message("telemetry", 1, {"ts_ms": 1, "values": [], "mode": "x",
                                                             "step": None}))


def test_unknown_field_is_named() -> None:
    with pytest.raises(EncodingError, match="'ack' field 'extra'"):
        Ack.from_bytes(encode_message("ack", 1, {"seq": 1, "extra": 2}))


@pytest.mark.parametrize(("body", "field"), [
    ({"seq": -1}, "seq"), ({"seq": "7"}, "seq"), ({"seq": True}, "seq"),
])
def test_ack_with_bad_seq_names_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(EncodingError, match=f"'ack' field '{field}'"):
        Ack.from_bytes(encode_message("ack", 1, body))


def test_batch_whose_range_disagrees_with_its_entries_is_refused() -> None:
    body = decode_message(MESSAGES[2].to_bytes(), "journal", 1)
    body["to_seq"] = 7
    with pytest.raises(EncodingError, match="'journal' field 'to_seq'"):
        JournalBatch.from_bytes(encode_message("journal", 1, body))


def test_batch_with_short_prev_hash_is_refused() -> None:
    with pytest.raises(EncodingError, match="'prev_hash'"):
        JournalBatch(device="d", from_seq=1, to_seq=0, prev_hash=b"\x00", entries=())


def test_command_of_unknown_kind_is_refused() -> None:
    body = {"kind": "explode", "id": "c", "point": None, "value": None}
    with pytest.raises(EncodingError, match="'command' field 'kind'"):
        CommandMessage.from_bytes(encode_message("command", 1, body))


def test_telemetry_value_that_is_not_a_number_is_refused() -> None:
    body = decode_message(MESSAGES[-1].to_bytes(), "telemetry", 1)
    body["values"] = [["level", "high"]]
    with pytest.raises(EncodingError, match="'telemetry' field 'values'"):
        Telemetry.from_bytes(encode_message("telemetry", 1, body))


def test_refused_result_must_name_its_refusal() -> None:
    with pytest.raises(EncodingError, match="'refusal'"):
        ContractResult(contract="c", version=1, accepted=False, refusal=None, detail="")


def test_birth_with_contract_but_no_version_is_refused() -> None:
    with pytest.raises(EncodingError, match="'version'"):
        Birth(device="d", site="s", boot_id="b", contract="c", version=None, last_seq=0)


@given(st.binary(max_size=48))
def test_arbitrary_bytes_raise_encoding_error_only(data: bytes) -> None:
    for cls in (Birth, JournalBatch, Ack, ContractResult, CommandMessage, Telemetry):
        try:
            cls.from_bytes(data)
        except EncodingError:
            pass


@given(st.dictionaries(st.sampled_from(["seq", "x"]), st.one_of(st.none(), st.integers(), st.text(),
                                                                 st.lists(st.integers()))))
def test_arbitrary_ack_bodies_decode_or_raise_encoding_error_only(body: dict[str, object]) -> None:
    try:
        Ack.from_bytes(canonical_dumps({"kind": "ack", "v": 1, "body": body}))
    except EncodingError:
        pass


def test_hub_birth_refuses_an_empty_or_oversized_boot_id() -> None:
    with pytest.raises(EncodingError, match="'boot'"):
        HubBirth(boot="", ts_ms=1)
    with pytest.raises(EncodingError, match="at most 64"):
        HubBirth(boot="x" * 65, ts_ms=1)


@pytest.mark.parametrize(("gaps", "why"), [
    (((5, 5), (6, 6)), "apart"),         # adjacent: one range, written twice
    (((7, 8), (4, 4)), "ordered"),
    (((3, 4),), "inside"),               # starts before from_seq
    (((4, 4),), "seqs in gaps"),         # entries + gaps must cover from_seq..to_seq exactly
    (((4, "x"),), "pairs"),
])
def test_journal_gaps_that_do_not_tile_the_batch_are_refused(gaps: object, why: str) -> None:
    with pytest.raises(EncodingError, match=why):
        JournalBatch(device="d", from_seq=4, to_seq=9, prev_hash=b"\x00" * 32,
                     entries=(ENTRY,) * 3, gaps=gaps)  # type: ignore[arg-type]


def test_a_batch_without_gaps_encodes_as_before_gaps_existed() -> None:
    plain = JournalBatch(device="d", from_seq=5, to_seq=5, prev_hash=b"\x00" * 32, entries=(ENTRY,))
    assert "gaps" not in decode_message(plain.to_bytes(), "journal", 1)


def test_a_birth_lists_every_contract_the_agent_runs_and_an_older_one_lists_none() -> None:
    from contracts.codec import encode_message

    both = Birth(device="d1", site="s1", boot_id="b", contract="tank-pump", version=1, last_seq=9,
                 contracts=(("tank-pump", 1), ("tank-valve", 2)))
    assert Birth.from_bytes(both.to_bytes()) == both
    older = encode_message("birth", Birth.VERSION, {
        "device": "d1", "site": "s1", "boot_id": "b", "contract": "tank-pump", "version": 1,
        "last_seq": 9})
    assert Birth.from_bytes(older).contracts == ()
    with pytest.raises(EncodingError, match="contracts"):
        Birth(device="d1", site="s1", boot_id="b", contract=None, version=None, last_seq=0,
              contracts=(("tank-pump", 0),))
