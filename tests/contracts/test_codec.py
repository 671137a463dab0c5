"""Canonical CBOR, strict decoding, contract payloads and versioned wire envelopes."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.codec import (
    canonical_dumps, content_hash, decode_contract, decode_message, dumps_tagged, encode_contract,
    encode_message, loads, loads_tagged,
)
from contracts.errors import ContractInvalid, EncodingError

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"


@pytest.fixture
def contract():  # type: ignore[no-untyped-def]
    from contracts.loader import load_contract

    return load_contract(EXAMPLES / "tank-fill.yaml")


def test_map_key_order_does_not_change_the_bytes() -> None:
    assert canonical_dumps({"b": 1, "a": [1.0, 2]}) == canonical_dumps({"a": [1.0, 2], "b": 1})


def test_floats_use_their_shortest_exact_form() -> None:
    assert canonical_dumps(1.5) == bytes.fromhex("f93e00")  # half precision suffices


def test_trailing_bytes_after_one_item_are_refused() -> None:
    with pytest.raises(EncodingError, match="trailing bytes"):
        loads(canonical_dumps(1) + b"\x02")


def test_duplicate_map_keys_are_refused() -> None:
    with pytest.raises(EncodingError, match="Duplicate"):
        loads(bytes.fromhex("a2010101 02".replace(" ", "")))


@pytest.mark.parametrize("data", [b"", b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff", b"\xc1\x1b" + b"\xff" * 8,
                                  b"\x81" * 1000 + b"\x01", b"\xd8\x19\x00"])
def test_malformed_cbor_raises_encoding_error(data: bytes) -> None:
    with pytest.raises(EncodingError):
        loads(data)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_encoding_error_only(data: bytes) -> None:
    try:
        loads(data)
    except EncodingError:
        pass


def test_tagged_items_round_trip_with_their_tag() -> None:
    tag, value = loads_tagged(dumps_tagged(18, [b"a", {4: b"k"}]))
    assert tag == 18 and value[0] == b"a" and dict(value[1]) == {4: b"k"}
    assert loads_tagged(canonical_dumps([1])) == (None, [1])


def test_contract_round_trips_through_cbor(contract) -> None:  # type: ignore[no-untyped-def]
    assert decode_contract(encode_contract(contract)) == contract


def test_name_value_maps_keep_document_order_through_cbor(contract) -> None:  # type: ignore[no-untyped-def]
    decoded = decode_contract(encode_contract(contract))
    assert [name for name, _ in decoded.steps[0].do] == ["valve_open", "pump_speed"]
    assert decoded.safe_state == contract.safe_state and decoded.labels == contract.labels


def test_repeated_name_in_pairs_is_refused(contract) -> None:  # type: ignore[no-untyped-def]
    from contracts.schema_serialize import to_mapping

    doc = to_mapping(contract)
    doc["safe_state"] = [["pump_speed", 0], ["pump_speed", 1]]
    with pytest.raises(EncodingError, match="safe_state"):
        decode_contract(canonical_dumps(doc))


def test_equal_contracts_encode_to_equal_bytes_and_hash(contract) -> None:  # type: ignore[no-untyped-def]
    twin = decode_contract(encode_contract(contract))
    assert encode_contract(twin) == encode_contract(contract)
    assert content_hash(twin) == hashlib.sha256(encode_contract(contract)).hexdigest()
    assert content_hash(replace(contract, version=contract.version + 1)) != content_hash(contract)


def test_decode_contract_of_non_cbor_raises_encoding_error() -> None:
    with pytest.raises(EncodingError):
        decode_contract(b"\xff\x00")


def test_decode_contract_of_bad_content_lists_issues() -> None:
    with pytest.raises(ContractInvalid) as info:
        decode_contract(canonical_dumps({"contract": "x"}))
    assert any(issue.path == "version" for issue in info.value.issues)


def test_message_envelope_round_trips_body() -> None:
    assert decode_message(encode_message("ack", 1, {"seq": 7}), "ack", 1) == {"seq": 7}


def test_message_of_another_version_is_refused_with_both_versions_named() -> None:
    with pytest.raises(EncodingError, match=r"'ack' version 2 is not supported \(this build reads 1\)"):
        decode_message(encode_message("ack", 2, {"seq": 7}), "ack", 1)


def test_message_of_another_kind_is_refused() -> None:
    with pytest.raises(EncodingError, match="'birth' where 'ack' was expected"):
        decode_message(encode_message("birth", 1, {}), "ack", 1)


@pytest.mark.parametrize("obj", [[1, 2], {"kind": "ack", "v": 1}, {"kind": "ack", "v": 1, "body": 3},
                                 {"kind": "ack", "v": 1, "body": {1: 2}}])
def test_message_that_is_not_an_envelope_is_refused(obj: object) -> None:
    with pytest.raises(EncodingError, match="'ack'"):
        decode_message(canonical_dumps(obj), "ack", 1)


def test_loads_map_is_strict_and_decodes_again_after_a_refusal() -> None:
    from contracts.codec import loads_map
    good = canonical_dumps({"values": {"level": [1.25, "good", None]}})
    for bad in (good + b"\x00", canonical_dumps([1]), canonical_dumps({1: 2}), b"\xa1\x61a\xd8\x1c\x01",
                b"\xbf\xff", b"\xa1"):
        with pytest.raises(EncodingError):
            loads_map(bad)
        assert loads_map(good) == {"values": {"level": [1.25, "good", None]}}


def test_loads_map_from_several_threads_at_once_gives_each_its_own_body() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from contracts.codec import loads_map
    bodies = [canonical_dumps({"values": {"level": [i / 7, "good", None]}, "n": i})
              for i in range(2000)]

    def decode_all(k: int) -> bool:
        return all(loads_map(b)["n"] == i for i, b in enumerate(bodies) if i % 4 == k)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(decode_all, range(4)))


_GOOD_BODY = canonical_dumps({"values": {"level": [1.25, "good", None]}})
_BODIES = [_GOOD_BODY, canonical_dumps({"n": 1}), canonical_dumps({}), _GOOD_BODY + b"\x00",
           canonical_dumps([1]), canonical_dumps({1: 2}), b"\xa1\x61a\xd8\x1c\x01", b"\xbf\xff",
           b"\xa1", b"\xa1\x61a", b"\xa2\x61a\x01", b"", b"\xa1\x61a\x5a\xff\xff\xff\xff", b"\x01"]
"""Good maps and each way a body can be refused, among them bodies that end early (so a decoder
reading on would take the next body's bytes as theirs) and one claiming 4 GiB of bytes."""


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_BODIES), st.binary(max_size=12)), max_size=12))
def test_loads_maps_decodes_each_body_as_loads_map_does_on_its_own(bodies: list[bytes]) -> None:
    from contracts.codec import loads_map, loads_maps

    def alone(b: bytes) -> object:
        try:
            return loads_map(b)
        except EncodingError:
            return None

    assert loads_maps(bodies) == [alone(b) for b in bodies]
