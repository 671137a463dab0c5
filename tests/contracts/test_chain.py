"""The hash chain: building, round-tripping and verifying journal entries (pure)."""
from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from contracts.chain import (
    GENESIS, ChainBreak, Entry, EntryKind, entry_hash, make_entry, verify_chain,
)
from contracts.codec import canonical_dumps, loads
from contracts.errors import EncodingError


def build(n: int, *, start_seq: int = 1, prev: bytes = GENESIS) -> list[Entry]:
    out: list[Entry] = []
    for seq in range(start_seq, start_seq + n):
        out.append(make_entry(prev, seq, 1_000 * seq, EntryKind.OUTPUT, {"writes": {"p": seq}}))
        prev = out[-1].hash
    return out


def test_entry_hash_is_sha256_of_prev_and_canonical_cbor() -> None:
    body = {"b": 1, "a": [1.5, None, b"x"]}
    expected = hashlib.sha256(GENESIS + canonical_dumps([3, 7, "trip", body])).digest()
    assert entry_hash(GENESIS, 3, 7, EntryKind.TRIP, body) == expected


def test_hash_does_not_depend_on_body_key_order() -> None:
    one = entry_hash(GENESIS, 1, 0, EntryKind.EVENT, {"a": 1, "b": 2})
    two = entry_hash(GENESIS, 1, 0, EntryKind.EVENT, {"b": 2, "a": 1})
    assert one == two


def test_intact_chain_verifies_from_genesis_and_from_the_middle() -> None:
    chain = build(10)
    assert verify_chain(chain, GENESIS, 0) is None
    assert verify_chain(chain[4:], chain[3].hash, 4) is None
    assert verify_chain([], GENESIS, 0) is None


def test_tampered_body_is_reported_as_hash_mismatch_at_its_seq() -> None:
    chain = build(6)
    chain[3] = dataclasses.replace(chain[3], body={"writes": {"p": 999}})
    assert verify_chain(chain, GENESIS, 0) == ChainBreak(4, "hash mismatch")


def test_tampered_hash_is_reported_at_its_seq() -> None:
    chain = build(6)
    chain[2] = dataclasses.replace(chain[2], hash=bytes(31) + b"\x01")
    assert verify_chain(chain, GENESIS, 0) == ChainBreak(3, "hash mismatch")


def test_tampered_prev_hash_is_reported_as_not_linking() -> None:
    chain = build(6)
    chain[5] = dataclasses.replace(chain[5], prev_hash=chain[3].hash)
    assert verify_chain(chain, GENESIS, 0) == ChainBreak(6, "prev_hash does not link")


def test_missing_entry_is_reported_as_seq_gap() -> None:
    chain = build(15)
    del chain[11:13]
    assert verify_chain(chain, GENESIS, 0) == ChainBreak(14, "seq gap: expected 12, got 14")


def test_wrong_anchor_is_reported_at_the_first_entry() -> None:
    chain = build(3, start_seq=5, prev=b"\x07" * 32)
    assert verify_chain(chain, GENESIS, 4) == ChainBreak(5, "prev_hash does not link")
    assert verify_chain(chain, b"\x07" * 32, 3) == ChainBreak(5, "seq gap: expected 4, got 5")


def test_reordered_entries_are_a_seq_gap() -> None:
    chain = build(4)
    chain[1], chain[2] = chain[2], chain[1]
    assert verify_chain(chain, GENESIS, 0) == ChainBreak(3, "seq gap: expected 2, got 3")


def test_unencodable_body_is_a_break_not_an_exception() -> None:
    chain = build(2)
    chain[1] = dataclasses.replace(chain[1], body={"x": object()})
    broken = verify_chain(chain, GENESIS, 0)
    assert broken is not None and broken.seq == 2 and "cannot be encoded" in broken.reason


def test_make_entry_rejects_bad_prev_and_seq() -> None:
    with pytest.raises(ValueError):
        make_entry(b"short", 1, 0, EntryKind.BOOT, {})
    with pytest.raises(ValueError):
        make_entry(GENESIS, 0, 0, EntryKind.BOOT, {})
    with pytest.raises(EncodingError):
        make_entry(GENESIS, 1, 0, EntryKind.BOOT, {"x": object()})


bodies = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
        | st.floats(allow_nan=False) | st.text(max_size=8) | st.binary(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=10),
    max_size=5)


@given(body=bodies, kind=st.sampled_from(EntryKind), seq=st.integers(1, 2**40),
       ts=st.integers(0, 2**45))
def test_entry_mapping_round_trips_through_cbor(body: dict, kind: EntryKind, seq: int,
                                                ts: int) -> None:
    entry = make_entry(GENESIS, seq, ts, kind, body)
    back = Entry.from_mapping(loads(canonical_dumps(entry.to_mapping())))
    assert back == entry
    assert verify_chain([back], GENESIS, seq - 1) is None


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("seq", "1", "'seq'"),
    ("seq", True, "'seq'"),
    ("ts_ms", -5, "'ts_ms'"),
    ("kind", "nonsense", "'kind'"),
    ("body", [1], "'body'"),
    ("body", {1: 2}, "'body'"),
    ("prev_hash", b"\x00" * 31, "'prev_hash'"),
    ("hash", "00" * 32, "'hash'"),
])
def test_from_mapping_names_the_bad_field(field: str, value: object, needle: str) -> None:
    m = build(1)[0].to_mapping()
    m[field] = value
    with pytest.raises(EncodingError, match=needle):
        Entry.from_mapping(m)


def test_from_mapping_names_a_missing_field() -> None:
    m = build(1)[0].to_mapping()
    del m["prev_hash"]
    with pytest.raises(EncodingError, match="'prev_hash': missing"):
        Entry.from_mapping(m)
    with pytest.raises(EncodingError, match="expected a map"):
        Entry.from_mapping([1, 2])


@given(st.integers(min_value=1, max_value=2**40), st.integers(min_value=0, max_value=2**50),
       st.sampled_from(list(EntryKind)),
       st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.floats(allow_nan=False),
                                                       st.text(max_size=8), st.none()), max_size=5))
def test_hash_from_an_encoded_body_equals_hash_of_the_whole_array(seq: int, ts: int,
                                                                   kind: EntryKind,
                                                                   body: dict) -> None:
    from contracts.chain import encode_body, hash_encoded
    from contracts.codec import canonical_dumps
    import hashlib
    whole = hashlib.sha256(GENESIS + canonical_dumps([seq, ts, kind.value, body])).digest()
    assert hash_encoded(GENESIS, seq, ts, kind, encode_body(body)) == whole


@given(st.integers(min_value=0, max_value=2**70))
@example(23)  # each side of each CBOR head size (RFC 8949 section 3), and the first bignum
@example(24)
@example(255)
@example(256)
@example(2**16 - 1)
@example(2**16)
@example(2**32 - 1)
@example(2**32)
@example(2**64 - 1)
@example(2**64)
def test_hand_encoded_ints_are_cbor2s_canonical_encoding(n: int) -> None:
    """seq and ts_ms are hand-encoded into the hashed array (every head size and bignums)."""
    from contracts.chain import hash_encoded
    expected = hashlib.sha256(GENESIS + canonical_dumps([n, n, "event", {}])).digest()
    assert hash_encoded(GENESIS, n, n, EntryKind.EVENT, canonical_dumps({})) == expected


@given(st.integers(min_value=0, max_value=2**64), st.integers(min_value=0, max_value=2**64),
       st.sampled_from(list(EntryKind)))
def test_hash_encoded_is_the_hash_of_the_canonical_array(seq: int, ts: int, kind: EntryKind) -> None:
    from contracts.chain import hash_encoded
    body = {"values": {"level": [1.25, "good", None]}}
    expected = hashlib.sha256(GENESIS + canonical_dumps([seq, ts, kind.value, body])).digest()
    assert hash_encoded(GENESIS, seq, ts, kind, canonical_dumps(body)) == expected


@given(st.integers(min_value=1, max_value=30), st.integers(min_value=0, max_value=29),
       st.sampled_from(["none", "body", "prev", "seq", "hash"]))
def test_verify_run_agrees_with_check_entry_one_by_one(n: int, at: int, tamper: str) -> None:
    from contracts.chain import check_entry, verify_run
    entries = build(n)
    i = at % n
    if tamper == "body":
        entries[i] = dataclasses.replace(entries[i], body={"writes": {"p": -1}})
    elif tamper == "prev":
        entries[i] = dataclasses.replace(entries[i], prev_hash=bytes(32))
    elif tamper == "seq":
        entries[i] = dataclasses.replace(entries[i], seq=entries[i].seq + 5)
    elif tamper == "hash":
        entries[i] = dataclasses.replace(entries[i], hash=bytes(32))
    expected_bodies, expected_break, prev, seq = [], None, GENESIS, 0
    for e in entries:
        broken, body = check_entry(e, prev, seq)
        if broken is not None:
            expected_break = broken
            break
        expected_bodies.append(body)
        prev, seq = e.hash, e.seq
    assert verify_run(entries, GENESIS, 0) == (len(expected_bodies), expected_bodies, expected_break)
