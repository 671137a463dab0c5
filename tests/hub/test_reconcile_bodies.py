"""The reconciliation's fold reads typed bodies: what it takes from each, and what it passes by."""
from __future__ import annotations

from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.engine_state import Mode
from hub.reconcile import actual_from_entries

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
