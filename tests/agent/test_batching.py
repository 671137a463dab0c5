"""Batch building (agent/batching.py, pure): holes become declared gaps inside the batch."""
from __future__ import annotations

from hypothesis import given, strategies as st

from agent import batching
from contracts.chain import GENESIS, EntryKind, make_entry
from contracts.chain_rows import Row, row_of


def entries(seqs: list[int]) -> list[Row]:
    return [row_of(make_entry(GENESIS, s, 1_000 + s, EntryKind.EVENT, {"event": "x"}))
            for s in seqs]


def test_holes_name_every_missing_range_including_a_leading_one() -> None:
    assert batching.holes(5, [7, 8, 11]) == ((5, 6), (9, 10))
    assert batching.holes(1, [1, 2, 3]) == ()


@given(st.sets(st.integers(1, 200), min_size=1))
def test_a_batch_over_any_surviving_rows_tiles_its_range_with_entries_and_gaps(
        kept: set[int]) -> None:
    seqs = sorted(kept)
    batch = batching.build("d1", 1, entries(seqs))
    assert batch.from_seq == 1 and batch.to_seq == seqs[-1]
    covered = {r.seq for r in batch.rows}
    for lo, hi in batch.gaps:
        covered |= set(range(lo, hi + 1))
    assert covered == set(range(1, seqs[-1] + 1))
    assert type(batch).from_bytes(batch.to_bytes()) == batch


def test_an_entry_that_cannot_be_encoded_is_set_aside_with_its_reason() -> None:
    good = entries([1, 2])
    bad = entries([3])[0]._replace(body=object())  # type: ignore[arg-type]  # no stored row is
    kept, refused = batching.encodable("d1", [*good, bad])
    assert kept == good and [seq for seq, _ in refused] == [3]
