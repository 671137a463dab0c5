"""The typed live-values cache (hub/live.py), alone."""
from __future__ import annotations

from contracts.wire import Telemetry
from hub.errors import PeerFault, RemoteErrorCounts, RemoteProtocolError
from hub.live import SHOWN_FIELDS, LiveValues, is_projection, seen_ms


def test_telemetry_becomes_typed_live_values_and_an_older_agents_fields_default() -> None:
    t = Telemetry(ts_ms=5, values=(("level", 1.5),), mode="running", step="fill", seq=9,
                  commanded=(("pump", 1200),), read_ms=(("level", 4),), safe="confirmed",
                  trip="stale:level")
    live = LiveValues.of(t, 7)
    assert (live.ts_ms, live.received_ms, live.values, live.commanded, live.read_ms) == (
        5, 7, {"level": 1.5}, {"pump": 1200}, {"level": 4})
    assert (live.safe, live.trip, live.mode, live.step, live.seq) == (
        "confirmed", "stale:level", "running", "fill", 9)
    old = LiveValues.of(Telemetry(ts_ms=5, values=(), mode="idle", step=None, seq=0), 7)
    assert (old.commanded, old.read_ms, old.safe, old.trip) == ({}, {}, None, None)


def test_the_shown_form_is_the_stored_live_blob_and_never_a_projection() -> None:
    live = LiveValues(ts_ms=5, received_ms=7, mode="idle", values={"level": 1.0})
    shown = live.shown()
    assert shown["source"] == "live" and set(shown) == {"source", *SHOWN_FIELDS}
    assert not is_projection(shown) and is_projection({"source": "projection"})
    assert not is_projection(None)
    assert live.seed() == {"ts_ms": 5, "state": None, "values": {"level": 1.0}, "version": None}


def test_last_heard_is_the_newer_of_telemetry_and_the_stored_time() -> None:
    live = LiveValues(ts_ms=5, received_ms=7, mode="idle")
    assert (seen_ms(live, 3), seen_ms(live, 9), seen_ms(None, None)) == (5, 9, 0)


def test_remote_protocol_errors_are_counted_by_fault_with_every_fault_present() -> None:
    counts = RemoteErrorCounts()
    counts.count(RemoteProtocolError(PeerFault.OUT_OF_ORDER, "d1", "x"))
    assert counts[PeerFault.OUT_OF_ORDER] == 1
    assert counts.snapshot() == {"out_of_order": 1, "unreadable": 0, "unknown_record": 0}
