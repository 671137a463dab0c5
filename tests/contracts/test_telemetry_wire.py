"""Telemetry's device-truth fields: optional with defaults (older payloads decode), checked."""
from __future__ import annotations

import pytest

from contracts.codec import encode_message
from contracts.errors import EncodingError
from contracts.wire import Telemetry

BASE = {"ts_ms": 1, "values": [["pump_speed", 500.0]], "mode": "safe", "step": "fill", "seq": 3}


def test_an_older_payload_without_the_new_fields_decodes_with_defaults() -> None:
    t = Telemetry.from_bytes(encode_message("telemetry", 1, BASE))
    assert (t.commanded, t.read_ms, t.safe, t.trip, t.faults) == ((), (), None, None, ())


def test_the_new_fields_round_trip() -> None:
    t = Telemetry(ts_ms=1, values=(("pump_speed", 500.0),), mode="safe", step=None, seq=3,
                  commanded=(("pump_speed", 0),), read_ms=(("pump_speed", 1_700_000_000_000),),
                  safe="unconfirmed", trip="stale:level",
                  faults=(("flow", "exception 2 (illegal data address) at input 70"),))
    assert Telemetry.from_bytes(t.to_bytes()) == t


@pytest.mark.parametrize("field, value", [("safe", "maybe"), ("read_ms", [["level", -1]]),
                                          ("commanded", [["pump_speed", "fast"]]), ("trip", 7),
                                          ("faults", [["flow", ""]]), ("faults", [["flow", 2]]),
                                          ("faults", [["flow", "x" * 201]]),
                                          ("faults", [[f"p{i}", "timeout"] for i in range(257)])])
def test_bad_new_fields_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(EncodingError, match=f"field '{field}'"):
        Telemetry.from_bytes(encode_message("telemetry", 1, {**BASE, field: value}))
