"""What devices report they run, read from their journals in the store (hub/reports.py)."""
from __future__ import annotations

from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.codec import canonical_dumps
from hub.reports import ReportedContracts
from hub.store import HubStore

T0 = 1_795_500_000_000


def _append(store: HubStore, device: str, bodies: list[tuple[EntryKind, dict[str, object]]],
            start: int = 1, prev: bytes = GENESIS) -> bytes:
    entries: list[Entry] = []
    for seq, (kind, body) in enumerate(bodies, start=start):
        entries.append(make_entry(prev, seq, T0 + seq, kind, body))
        prev = entries[-1].hash
    store.journal.insert_entries(device, entries, [canonical_dumps(dict(e.body)) for e in entries])
    return prev


def test_hashes_and_refusals_come_from_the_journal_and_are_read_incrementally(store: HubStore) -> None:
    reports = ReportedContracts(store)
    prev = _append(store, "d1", [
        (EntryKind.INPUT, {"values": {"level": [1.0, "good", None]}}),
        (EntryKind.CONTRACT, {"event": "refused", "contract": "tank.d1", "version": 2,
                              "refusal": "older_version", "detail": "v3 accepted"}),
        (EntryKind.CONTRACT, {"event": "accepted", "contract": "pump.d1", "version": 1,
                              "hash": "a" * 64}),
    ])
    reports.refresh()
    assert reports.hash_of("d1", "pump.d1", 1) == "a" * 64
    refused = reports.refusal("d1", "tank.d1")
    assert refused is not None and (refused.version, refused.refusal) == (2, "older_version")
    assert reports.hash_of("d2", "pump.d1", 1) is None  # another device's report is not d1's
    _append(store, "d1", [(EntryKind.CONTRACT, {"event": "accepted", "contract": "tank.d1",
                                                "version": 4, "hash": "b" * 64})],
            start=4, prev=prev)
    reports.refresh()  # only what was stored since
    assert reports.hash_of("d1", "tank.d1", 4) == "b" * 64
    assert reports.refusal("d1", "tank.d1") is None  # a later acceptance ends the refusal
