"""The reconciliation's fold reads typed bodies: what it takes from each, and what it passes by."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.chain_rows import row_of
from contracts.engine_state import Mode
from hub.reconcile import Actual, actual_from_entries, fold_rows

T0 = 1_795_500_000_000


def _chain(bodies: list[tuple[EntryKind, object]]) -> list[Entry]:
    out, prev = [], GENESIS
    for seq, (kind, body) in enumerate(bodies, start=1):
        e = make_entry(prev, seq, T0 + seq, kind, body)  # type: ignore[arg-type]
        out.append(e)
        prev = e.hash
    return out


def test_a_body_that_does_not_decode_is_passed_by_and_counted_not_raised() -> None:
    actual = actual_from_entries(_chain([
        (EntryKind.INPUT, {"n": 1}),                                 # no values
        (EntryKind.OUTPUT, {"writes": {"pump": 3}, "extra": "x"}),   # a key outputs do not have
        (EntryKind.STEP, {"step": "fill"}),                          # no event
        (EntryKind.OUTPUT, {"writes": {"pump": 5}}),
    ]))
    assert actual.unreadable == 3
    assert actual.outputs == {"pump": 5}


def test_modes_follow_the_engines_table_including_autonomy_hold() -> None:
    actual = actual_from_entries(_chain([
        (EntryKind.STEP, {"event": "started", "contract": "c", "version": 1}),
        (EntryKind.TRIP, {"event": "autonomy_exhausted", "autonomy_s": 30, "then": "hold"}),
    ]))
    assert actual.mode is Mode.OFFLINE_HOLD and actual.trip == "autonomy"
    actual = actual_from_entries(_chain([
        (EntryKind.TRIP, {"event": "autonomy_exhausted", "autonomy_s": 30, "then": "safe_state"}),
        (EntryKind.EVENT, {"event": "from_a_newer_agent"}),
    ]))
    assert actual.mode is Mode.SAFE and actual.unreadable == 0


_readings = st.lists(st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=2)),
                     min_size=1, max_size=4).map(lambda xs: xs[:1] + ["good", None] if len(xs) < 3
                                                 else xs[:3])
_input_bodies = st.one_of(
    st.dictionaries(st.sampled_from(["level", "flow"]), st.one_of(
        st.tuples(st.one_of(st.none(), st.floats(-1, 1), st.booleans()),
                  st.sampled_from(["good", "bad", "stale", "?"]), st.none()).map(list),
        _readings), max_size=3).map(lambda v: {"values": v}),
    st.just({"values": {"level": [1.0, "good", None]}, "extra": 1}),
    st.just({"values": [1, 2]}), st.just({}))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([EntryKind.INPUT, EntryKind.OUTPUT]), _input_bodies),
                min_size=1, max_size=8))
def test_folding_stored_rows_gives_what_folding_decoded_entries_gives(
        items: list[tuple[EntryKind, dict[str, object]]]) -> None:
    entries = _chain(items)  # type: ignore[arg-type]
    try:
        expected = actual_from_entries(entries)
    except ValueError:  # a reading with an unknown quality: the fold refuses it either way
        with pytest.raises(ValueError):
            fold_rows(Actual(), [row_of(e) for e in entries])
        return
    got = fold_rows(Actual(), [row_of(e) for e in entries])
    assert (got.values, got.outputs, got.unreadable) == (
        expected.values, expected.outputs, expected.unreadable)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([EntryKind.INPUT, EntryKind.OUTPUT]), _input_bodies,
                          st.sampled_from([None, "a@1", "b@1", 7])), min_size=1, max_size=8))
def test_folding_one_contracts_rows_takes_only_what_belongs_to_it(
        items: list[tuple[EntryKind, dict[str, object], object]]) -> None:
    """Several contracts per agent: the fold of `a@1` takes its own rows and untagged ones, the
    same with the all-good INPUT shortcut as through the typed fold."""
    from contracts.journal_events import CONTRACT_TAG, belongs_to
    entries = _chain([(k, b if tag is None else {**b, CONTRACT_TAG: tag})  # type: ignore[misc]
                      for k, b, tag in items])
    try:
        expected = actual_from_entries([e for e in entries if belongs_to(e, "a@1")])
    except ValueError:
        return  # an unknown quality: refused either way (the test above)
    got = fold_rows(Actual(), [row_of(e) for e in entries], "a@1")
    assert (got.values, got.outputs) == (expected.values, expected.outputs)
