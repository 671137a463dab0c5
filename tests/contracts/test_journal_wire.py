"""The journal batch's two wire forms: version 1 (entry maps) and version 2 (rows of body bytes)
verify the same chain, and a tampered byte is caught (pure)."""
from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.chain import GENESIS, ChainBreak, Entry, EntryKind, hash_encoded, make_entry
from contracts.chain_rows import Row, entry_of, is_map, row_of, verify_rows
from contracts.codec import canonical_dumps, encode_message, loads
from contracts.errors import EncodingError
from contracts.journal_sig import sign_head, verify_head
from contracts.journal_wire import JournalRows, decode_journal
from contracts.wire import JournalBatch

KEY = Ed25519PrivateKey.generate()
SETTINGS = settings(max_examples=60, deadline=None)

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.text(max_size=8)
    | st.floats(allow_nan=False, width=64),
    lambda inner: st.lists(inner, max_size=3), max_leaves=6)
bodies = st.dictionaries(st.text(max_size=6), values, max_size=4)
journals = st.tuples(st.lists(st.tuples(st.sampled_from(list(EntryKind)), bodies),
                              min_size=1, max_size=12),
                     st.sets(st.integers(0, 11), max_size=4))


def journal(items: list[tuple[EntryKind, dict[str, Any]]]) -> list[Entry]:
    out, prev = [], GENESIS
    for seq, (kind, body) in enumerate(items, start=1):
        out.append(make_entry(prev, seq, 1_700_000_000_000 + seq, kind, body))
        prev = out[-1].hash
    return out


def holes(kept: list[Entry], first: int, last: int) -> tuple[tuple[int, int], ...]:
    gaps, expected = [], first
    for seq in [e.seq for e in kept] + [last + 1]:
        if seq > expected:
            gaps.append((expected, seq - 1))
        expected = seq + 1
    return tuple(gaps)


def both_forms(entries: list[Entry], missing: set[int]) -> tuple[bytes, bytes]:
    """One signed batch of `entries` minus the seqs in `missing` (declared as gaps), in v1 and v2."""
    last = entries[-1].seq
    kept = [e for e in entries if e.seq not in missing or e.seq == last]
    gaps, prev = holes(kept, 1, last), kept[0].prev_hash  # as the agent builds it
    v1 = JournalBatch(device="d1", from_seq=1, to_seq=last, prev_hash=prev,
                      entries=tuple(e.to_mapping() for e in kept), gaps=gaps)
    v2 = JournalRows(device="d1", from_seq=1, to_seq=last, prev_hash=prev,
                     rows=tuple(row_of(e) for e in kept), gaps=gaps)
    assert v1.signed_head() == v2.signed_head()
    sig = sign_head(v2.signed_head(), KEY)
    return (JournalBatch(**{**v1.__dict__, "sig": sig}).to_bytes(),
            JournalRows(**{**v2.__dict__, "sig": sig}).to_bytes())


def chain_ok(batch: JournalRows) -> bool:
    """Every run of rows chains, from the prev_hash its first row carries (which that row's hash
    covers): what the hub checks, linking the first row to its own cursor."""
    rows, start = batch.rows, 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i].seq != rows[i - 1].seq + 1:
            first = rows[start]
            if verify_rows(rows[start:i], first.prev_hash, first.seq - 1)[1] is not None:
                return False
            start = i
    return True


def accepted(payload: bytes) -> bool:
    """What the hub accepts: decodes, signature verifies over the head, every run chains."""
    try:
        batch = decode_journal(payload)
    except EncodingError:
        return False
    return verify_head(batch.signed_head(), batch.sig, KEY.public_key()) and chain_ok(batch)


@SETTINGS
@given(journals)
def test_both_forms_decode_to_the_same_rows_and_verify_the_same_chain(drawn: Any) -> None:
    items, missing = drawn
    entries = journal(items)
    v1, v2 = both_forms(entries, missing)
    one, two = decode_journal(v1), decode_journal(v2)
    assert one == two
    assert accepted(v1) and accepted(v2)
    assert len(v2) < len(v1) or len(entries) < 3
    assert [entry_of(r).body for r in two.rows] == [
        e.body for e in entries if e.seq not in missing or e.seq == entries[-1].seq]


def stored(batch: JournalRows) -> tuple[Any, ...]:
    """What the hub keeps and acts on from a batch (v1's batch-level prev_hash is not among it:
    each of its entries carries its own)."""
    return batch.device, batch.from_seq, batch.to_seq, batch.rows, batch.gaps


@SETTINGS
@given(journals, st.data())
def test_a_tampered_byte_of_either_form_is_caught_or_changes_nothing_stored(
        drawn: Any, data: st.DataObject) -> None:
    items, missing = drawn
    for payload in both_forms(journal(items), missing):
        at = data.draw(st.integers(0, len(payload) - 1), label="byte")
        flip = data.draw(st.integers(1, 255), label="xor")
        tampered = payload[:at] + bytes((payload[at] ^ flip,)) + payload[at + 1:]
        assert not accepted(tampered) or stored(decode_journal(tampered)) == stored(
            decode_journal(payload))


@SETTINGS
@given(journals, st.data())
def test_a_tampered_byte_of_a_row_is_reported_at_its_seq(drawn: Any, data: st.DataObject) -> None:
    entries = journal(drawn[0])
    rows = [row_of(e) for e in entries]
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    field = data.draw(st.sampled_from(["body", "hash", "prev_hash"]), label="field")
    value: bytes = getattr(rows[i], field)
    at = data.draw(st.integers(0, len(value) - 1), label="byte")
    rows[i] = rows[i]._replace(**{field: value[:at] + bytes((value[at] ^ 0x01,)) + value[at + 1:]})
    n, broken = verify_rows(rows, GENESIS, 0)
    assert n == i and broken is not None and broken.seq == i + 1


def test_verification_hashes_the_body_bytes_as_they_are() -> None:
    body = canonical_dumps({"writes": {"p": 1}})
    digest = hash_encoded(GENESIS, 1, 5, EntryKind.OUTPUT, body)
    row = Row(1, 5, EntryKind.OUTPUT, body, GENESIS, digest)
    assert digest == make_entry(GENESIS, 1, 5, EntryKind.OUTPUT, {"writes": {"p": 1}}).hash
    assert verify_rows([row], GENESIS, 0) == (1, None)


def test_a_body_that_is_not_a_map_is_refused_even_when_its_hash_is_right() -> None:
    for body in (canonical_dumps([1, 2]), canonical_dumps("x"), b"", b"\xbf\xff"):
        row = Row(1, 5, EntryKind.EVENT, body, GENESIS, hash_encoded(GENESIS, 1, 5, EntryKind.EVENT,
                                                                     body))
        assert verify_rows([row], GENESIS, 0) == (0, ChainBreak(1, "body is not a CBOR map"))
        assert not is_map(body)


@pytest.mark.parametrize("body", [b"\xa1", b"\xa1\x01\x02", b"\xa1\x61a\xd8\x1c\x01",
                                  b"\xa0\x00"])
def test_a_malformed_map_verifies_but_its_reader_gets_an_encoding_error(body: bytes) -> None:
    row = Row(1, 5, EntryKind.TRIP, body, GENESIS, hash_encoded(GENESIS, 1, 5, EntryKind.TRIP, body))
    assert verify_rows([row], GENESIS, 0) == (1, None)
    with pytest.raises(EncodingError):
        entry_of(row)


def test_the_row_form_gives_prev_hash_once_and_again_where_the_chain_restarts() -> None:
    entries = journal([(EntryKind.OUTPUT, {"writes": {"p": i}}) for i in range(6)])
    kept = [e for e in entries if e.seq != 3]
    batch = JournalRows(device="d1", from_seq=1, to_seq=6, prev_hash=GENESIS,
                        rows=tuple(row_of(e) for e in kept), gaps=((3, 3),))
    wire_rows = loads(batch.to_bytes())["body"]["rows"]
    assert [len(r) for r in wire_rows] == [5, 5, 6, 5, 5]
    assert wire_rows[2][5] == entries[2].hash
    assert decode_journal(batch.to_bytes()) == batch


@pytest.mark.parametrize("row, why", [
    ([1, 5, "output", b"\xa0"], "must be \\[seq, ts_ms, kind, body, hash\\]"),
    ([1, 5, "nonsense", b"\xa0", bytes(32)], "kind must be an entry kind"),
    ([1, 5, "output", {"a": 1}, bytes(32)], "body must be a byte string"),
    ([-1, 5, "output", b"\xa0", bytes(32)], "seq must be an integer"),
    ([1, 5, "output", b"\xa0", bytes(31)], "hash must be 32 bytes"),
    ([1, 5, "output", b"\xa0", bytes(32), b"x"], "prev_hash must be 32 bytes"),
])
def test_a_malformed_row_is_refused_naming_it(row: list[Any], why: str) -> None:
    payload = encode_message("journal", 2, {"device": "d1", "from_seq": 1, "to_seq": 1,
                                            "prev_hash": GENESIS, "rows": [row]})
    with pytest.raises(EncodingError, match=rf"rows\[0\]'?: {why}"):
        decode_journal(payload)


def test_a_version_this_build_does_not_read_is_refused() -> None:
    payload = encode_message("journal", 3, {})
    with pytest.raises(EncodingError, match="version 3 is not supported \\(this build reads 1, 2\\)"):
        decode_journal(payload)
