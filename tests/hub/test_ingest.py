"""DeviceIngest: idempotent by seq, reordering buffered, the chain verified, gaps re-anchored."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hub.ingest
from contracts.chain import GENESIS, EntryKind, encode_body, make_entry
from contracts.chain_rows import Row, entry_of, row_of
from hub.ingest import Cursor, DeviceIngest, Gap

T0 = 1_764_000_000_000
N = 40


def chain(n: int = N) -> list[Row]:
    """A valid journal 1..n, shaped like the agent's (inputs and outputs every cycle)."""
    out: list[Row] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        kind = EntryKind.INPUT if seq % 2 else EntryKind.OUTPUT
        body = ({"values": {"level": [seq / 10, "good", None]}} if kind is EntryKind.INPUT
                else {"writes": {"pump_speed": seq}})
        e = row_of(make_entry(prev, seq, T0 + seq * 100, kind, body))
        out.append(e)
        prev = e.hash
    return out


CHAIN = chain()


def seqs(entries: list[Row]) -> list[int]:
    return [e.seq for e in entries]


def spans(result: hub.ingest.IngestResult) -> list[tuple[int, int]]:
    return [(g.from_seq, g.to_seq) for g in result.gaps]


def run(batches: list[list[Row]], cursor: Cursor = Cursor()) -> tuple[DeviceIngest, list[Row]]:
    ing = DeviceIngest(cursor)
    stored: list[Row] = []
    for b in batches:
        stored += ing.add(b).store
    return ing, stored


# -- in order and duplicates -----------------------------------------------------------------

def test_in_order_batches_are_stored_once_and_the_cursor_advances_to_the_last_hash() -> None:
    ing = DeviceIngest(Cursor())
    first = ing.add(CHAIN[:10])
    second = ing.add(CHAIN[10:25])
    assert seqs(first.store) == list(range(1, 11)) and first.cursor.seq == 10
    assert seqs(second.store) == list(range(11, 26))
    assert second.cursor == Cursor(seq=25, hash=CHAIN[24].hash)
    assert (second.duplicates, second.buffered, second.broken, second.gaps) == (0, 0, None, [])


def test_a_next_batch_shuffled_inside_or_repeating_an_entry_is_still_stored_once_in_order() -> None:
    # The in-order fast path takes a batch only if all of it continues the chain; anything else
    # falls back to the buffer, with the same result as before it existed.
    ing = DeviceIngest(Cursor())
    shuffled = ing.add([CHAIN[0], CHAIN[2], CHAIN[1], CHAIN[1], CHAIN[3]])
    assert seqs(shuffled.store) == [1, 2, 3, 4] and shuffled.duplicates == 1
    assert shuffled.cursor == Cursor(seq=4, hash=CHAIN[3].hash) and shuffled.buffered == 0
    tampered = CHAIN[5]._replace(body=encode_body({"values": {"level": [9.9, "good", None]}}))
    broken = ing.add([CHAIN[4], tampered, CHAIN[6]])
    assert seqs(broken.store) == [5] and broken.broken is not None and broken.broken.seq == 6
    assert broken.cursor.seq == 5 and broken.buffered == 0


def test_a_resent_batch_is_counted_as_duplicates_and_stores_nothing() -> None:
    ing = DeviceIngest(Cursor())
    ing.add(CHAIN[:10])
    again = ing.add(CHAIN[:10])
    assert again.store == [] and again.duplicates == 10 and again.cursor.seq == 10


def test_overlapping_batches_store_only_the_new_tail() -> None:
    ing = DeviceIngest(Cursor())
    ing.add(CHAIN[:10])
    overlap = ing.add(CHAIN[5:15])
    assert seqs(overlap.store) == list(range(11, 16)) and overlap.duplicates == 5


def test_ingest_resumes_from_a_persisted_cursor() -> None:
    ing = DeviceIngest(Cursor(seq=20, hash=CHAIN[19].hash))
    result = ing.add(CHAIN[15:30])
    assert seqs(result.store) == list(range(21, 31)) and result.duplicates == 5


# -- reordering -------------------------------------------------------------------------------

def test_a_later_batch_first_is_buffered_then_drained_in_order_when_the_gap_fills() -> None:
    ing = DeviceIngest(Cursor())
    early = ing.add(CHAIN[10:20])
    assert early.store == [] and early.buffered == 10 and early.cursor.seq == 0
    assert early.broken is None
    late = ing.add(CHAIN[:10])
    assert seqs(late.store) == list(range(1, 21)) and late.buffered == 0
    assert late.cursor.seq == 20


def test_a_buffered_entry_sent_again_counts_as_a_duplicate() -> None:
    ing = DeviceIngest(Cursor())
    ing.add(CHAIN[5:10])
    again = ing.add(CHAIN[5:10])
    assert again.duplicates == 5 and again.buffered == 5


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, list[list[Row]]]:
    """A chain 1..n cut into batches, delivered shuffled, with resends and overlapping slices."""
    n = draw(st.integers(min_value=1, max_value=N))
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=n - 1), max_size=8))) if n > 1 else []
    bounds = [0, *cuts, n]
    batches = [CHAIN[a:b] for a, b in zip(bounds, bounds[1:])]
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 10)), max_size=6))
    batches += [CHAIN[a:min(a + k, n)] for a, k in extra]
    return n, draw(st.permutations(batches))


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_any_shuffle_with_duplicates_of_a_valid_chain_stores_each_entry_once_in_order(
        case: tuple[int, list[list[Row]]]) -> None:
    n, batches = case
    ing, stored = run(batches)
    assert stored == CHAIN[:n]
    assert ing.cursor == Cursor(seq=n, hash=CHAIN[n - 1].hash)
    assert ing.pending == {}


# -- chain breaks -----------------------------------------------------------------------------

def assert_broken_at(seq: int, reason: str, batches: list[list[Row]],
                     acked: int | None = None) -> DeviceIngest:
    ing = DeviceIngest(Cursor())
    results = [ing.add(b) for b in batches]
    broken = [r.broken for r in results if r.broken is not None]
    stored = [e for r in results for e in r.store]
    assert len(broken) == 1 and broken[0].seq == seq and reason in broken[0].reason
    assert all(e.seq < seq for e in stored), "nothing at or after the break is stored"
    assert ing.cursor.seq == (seq - 1 if acked is None else acked) and ing.pending == {}
    return ing


def test_a_body_changed_without_rehashing_breaks_at_that_seq() -> None:
    tampered = CHAIN[9]._replace(body=encode_body({"writes": {"pump_speed": 9999}}))
    assert_broken_at(10, "hash mismatch", [CHAIN[:9] + [tampered] + CHAIN[10:20]])


def test_a_body_changed_and_rehashed_breaks_the_link_of_the_next_seq() -> None:
    # A rehashed entry verifies on its own (the chain is unsigned); its successor no longer links.
    old = CHAIN[9]
    forged = row_of(make_entry(old.prev_hash, old.seq, old.ts_ms, old.kind, {"writes": {"pump_speed": 9999}}))
    ing = assert_broken_at(11, "prev_hash does not link", [CHAIN[:9] + [forged] + CHAIN[10:20]])
    assert ing.cursor.hash == forged.hash


def test_a_forged_entry_with_a_valid_self_hash_but_a_wrong_prev_link_breaks_at_its_seq() -> None:
    old = CHAIN[9]
    forged = row_of(make_entry(b"\x01" * 32, old.seq, old.ts_ms, old.kind, dict(entry_of(old).body)))
    assert_broken_at(10, "prev_hash does not link", [CHAIN[:9], [forged] + CHAIN[10:20]])


def test_a_forged_entry_buffered_ahead_of_the_cursor_breaks_when_its_turn_comes() -> None:
    old = CHAIN[9]
    forged = row_of(make_entry(b"\x01" * 32, old.seq, old.ts_ms, old.kind, dict(entry_of(old).body)))
    assert_broken_at(10, "prev_hash does not link", [[forged] + CHAIN[10:20], CHAIN[:9]])


@pytest.mark.parametrize("together", [True, False])
def test_a_chain_that_skips_a_seq_is_a_break_not_a_wait(together: bool) -> None:
    # The agent's chain goes 1..5, then 7 linked straight to 5: seq 6 will never come.
    renumbered = row_of(make_entry(CHAIN[4].hash, 7, T0 + 700, EntryKind.OUTPUT, {"writes": {"pump_speed": 7}}))
    batches = [CHAIN[:5] + [renumbered]] if together else [CHAIN[:5], [renumbered]]
    assert_broken_at(7, "seq gap: expected 6, got 7", batches, acked=5)


def test_a_skipped_seq_buffered_early_is_a_break_once_the_cursor_reaches_its_link() -> None:
    renumbered = row_of(make_entry(CHAIN[4].hash, 7, T0 + 700, EntryKind.OUTPUT, {"writes": {"pump_speed": 7}}))
    assert_broken_at(7, "seq gap: expected 6, got 7", [CHAIN[:3], [renumbered], CHAIN[3:5]], acked=5)


def test_after_a_break_a_genuine_resend_from_the_ack_is_stored() -> None:
    tampered = CHAIN[9]._replace(body=encode_body({"writes": {"pump_speed": 9999}}))
    ing = DeviceIngest(Cursor())
    ing.add(CHAIN[:9] + [tampered] + CHAIN[10:20])
    resend = ing.add(CHAIN[9:20])
    assert seqs(resend.store) == list(range(10, 21)) and resend.broken is None


# -- dropped entries --------------------------------------------------------------------------

def test_dropped_through_reports_the_gap_and_reanchors_the_chain_on_the_next_entry() -> None:
    ing = DeviceIngest(Cursor())
    ing.add(CHAIN[:3])
    result = ing.add(CHAIN[6:10], dropped_through=6)
    assert spans(result) == [(4, 6)]
    assert seqs(result.store) == [7, 8, 9, 10] and result.broken is None
    assert result.cursor == Cursor(seq=10, hash=CHAIN[9].hash)
    assert ing.add(CHAIN[3:6]).duplicates == 3  # a late copy of a dropped run is not stored


def test_dropped_through_waits_for_the_entry_after_the_gap_before_reanchoring() -> None:
    ing = DeviceIngest(Cursor())
    ing.add(CHAIN[:3])
    early = ing.add(CHAIN[7:10], dropped_through=6)
    assert early.gaps == [] and early.store == [] and early.cursor.seq == 3
    result = ing.add(CHAIN[6:10], dropped_through=6)
    assert spans(result) == [(4, 6)] and seqs(result.store) == [7, 8, 9, 10]


def test_dropped_through_at_or_below_the_cursor_is_no_gap() -> None:
    ing = DeviceIngest(Cursor())
    ing.add(CHAIN[:5])
    result = ing.add(CHAIN[5:8], dropped_through=5)
    assert result.gaps == [] and seqs(result.store) == [6, 7, 8]


# -- holes declared inside a batch ------------------------------------------------------------


def test_a_declared_hole_is_crossed_reported_with_its_links_and_the_rest_is_verified() -> None:
    ing = DeviceIngest(Cursor())
    without_11 = CHAIN[:10] + CHAIN[11:20]
    result = ing.add(without_11, gaps=[(11, 11)])
    assert spans(result) == [(11, 11)] and result.broken is None
    gap = result.gaps[0]
    assert (gap.before, gap.after, gap.ts_ms) == (CHAIN[9].hash, CHAIN[11].prev_hash, CHAIN[11].ts_ms)
    assert seqs(result.store) == [*range(1, 11), *range(12, 21)]
    assert result.cursor == Cursor(seq=20, hash=CHAIN[19].hash)


def test_a_tampered_entry_after_a_hole_still_breaks_the_chain() -> None:
    forged = CHAIN[12]._replace(body=encode_body({"writes": {"pump_speed": 9999}}))
    result = DeviceIngest(Cursor()).add(CHAIN[:10] + [CHAIN[11], forged], gaps=[(11, 11)])
    assert spans(result) == [(11, 11)] and result.broken is not None and result.broken.seq == 13
    assert result.cursor.seq == 12


def test_a_hole_waits_until_it_is_next_and_the_entry_after_it_has_come() -> None:
    ing = DeviceIngest(Cursor())
    ahead = ing.add(CHAIN[14:20], gaps=[(11, 14)])  # the batch before it was lost
    assert ahead.gaps == [] and ahead.store == [] and ahead.cursor.seq == 0
    result = ing.add(CHAIN[:10])
    assert spans(result) == [(11, 14)] and result.cursor.seq == 20


def test_a_hole_declared_again_after_it_was_crossed_is_no_new_gap() -> None:
    ing = DeviceIngest(Cursor())
    ing.add(CHAIN[:10] + CHAIN[11:20], gaps=[(11, 11)])
    again = ing.add(CHAIN[11:20], gaps=[(11, 11)])
    assert again.gaps == [] and again.duplicates == 9


# -- the pending bound ------------------------------------------------------------------------

def test_the_pending_buffer_is_bounded_and_dropping_it_is_healed_by_a_resend(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub.ingest, "MAX_PENDING", 5)
    ing = DeviceIngest(Cursor())
    within = ing.add(CHAIN[1:6])
    assert within.buffered == 5
    over = ing.add(CHAIN[6:7])
    assert over.buffered == 0 and ing.pending == {} and over.store == []
    resend = ing.add(CHAIN[:7])
    assert seqs(resend.store) == list(range(1, 8))


def test_a_body_that_is_not_a_cbor_map_is_a_break_even_with_its_hash_right() -> None:
    from contracts.chain import hash_encoded
    from contracts.codec import canonical_dumps

    body = canonical_dumps(["not", "a", "map"])
    bad = Row(11, T0 + 1_100, EntryKind.OUTPUT, body, CHAIN[9].hash,
              hash_encoded(CHAIN[9].hash, 11, T0 + 1_100, EntryKind.OUTPUT, body))
    result = DeviceIngest(Cursor()).add([*CHAIN[:10], bad])
    assert seqs(result.store) == list(range(1, 11))
    assert result.broken is not None and (result.broken.seq, result.broken.reason) == (
        11, "body is not a CBOR map")
