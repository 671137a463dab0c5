"""A device's recent values (hub/series.py and GET /api/devices/{device}/series): the journal's own
readings as steps with their units, bad readings as gaps, undecodable bodies passed by."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
import pytest

from contracts import codec
from hub.auth import ApiRole
from hub.series import DecodedRows, encoded, fold, units_of
from hub.store import HubStore, JournalRow

from .conftest import START_MS, bearer

VIEW = bearer(ApiRole.VIEWER)


def _row(seq: int, kind: str, body: Any) -> JournalRow:
    raw = body if isinstance(body, bytes) else codec.canonical_dumps(body)
    return JournalRow(device="pump-station-7", seq=seq, ts_ms=START_MS + 1000 * seq, kind=kind,
                      body=raw, prev_hash=b"\x00", hash=bytes([seq]))


def _inputs(seq: int, **values: Any) -> JournalRow:
    return _row(seq, "input", {"values": {n: list(v) for n, v in values.items()}})


def test_fold_keeps_good_numbers_as_steps_bad_ones_as_gaps_and_passes_by_the_rest() -> None:
    rows = [
        _inputs(1, level=[1.5, "good", None], valve_open=[True, "good", None]),
        _row(2, "output", {"writes": {"pump_speed": 1200}}),          # not a reading
        _inputs(3, level=[1.5, "good", None]),                         # a repeat: no new sample
        _inputs(4, level=[0.0, "bad", "timeout"], mode=["auto", "good", None]),
        _row(5, "input", b"\xff\xff"),                                 # does not decode
        _row(6, "input", {"values": {"level": [2.0, "good", None]}, "extra": 1}),  # not a body
        _inputs(7, level=[2.25, "good", None]),
    ]
    got = fold(rows, {"level": "m"})
    assert got["entries"] == 4 and got["skipped"] == 2
    assert got["points"] == [
        {"name": "level", "unit": "m", "samples": [[START_MS + 1000, 1.5], [START_MS + 4000, None],
                                                   [START_MS + 7000, 2.25]]},
        {"name": "valve_open", "unit": None, "samples": [[START_MS + 1000, 1]]},
    ]  # "mode" is a string point: nothing to draw, so no series


def test_a_nan_or_infinite_reading_is_a_gap_and_the_answer_is_strict_json() -> None:
    rows = [_inputs(1, level=[1.0, "good", None]), _inputs(2, level=[float("nan"), "good", None]),
            _inputs(3, level=[float("inf"), "good", None]), _inputs(4, level=[2.0, "good", None])]
    body = encoded({"device": "pump-station-7"}, rows, {"level": "m"})
    parsed = json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} in the answer"))
    assert parsed["points"][0]["samples"] == [[START_MS + 1000, 1.0], [START_MS + 2000, None],
                                              [START_MS + 4000, 2.0]]


def test_decoded_rows_are_kept_by_entry_hash_and_the_least_recently_used_dropped() -> None:
    decoded = DecodedRows(capacity=2)
    first, second, third = (_inputs(s, level=[float(s), "good", None]) for s in (1, 2, 3))
    assert decoded(first) == {"level": [1.0, "good", None]}
    # same device and entry hash: the kept readings, whatever the body (an entry never changes)
    assert decoded(replace(first, body=second.body)) == {"level": [1.0, "good", None]}
    decoded(second), decoded(third)  # first is now the least recently used: dropped
    assert decoded(replace(first, body=second.body)) == {"level": [2.0, "good", None]}
    assert decoded(replace(first, device="other", body=third.body)) == {
        "level": [3.0, "good", None]}  # the hash is per device: another device's row is its own
    assert fold([first, second], {}, decoded)["entries"] == 2


def test_units_come_from_the_contract_document_and_a_strange_document_gives_none() -> None:
    doc = {"points": [{"name": "level", "unit": "m"}, {"name": "pump_speed"}, "junk", {"unit": 3}]}
    assert units_of(doc) == {"level": "m"}
    assert units_of({"points": "none"}) == {} and units_of(None) == {}


async def test_series_endpoint_serves_the_recent_window_with_units_and_refuses_a_bad_limit(
        client: httpx.AsyncClient, store: HubStore, tank_fill: dict[str, Any]) -> None:
    r = await client.post("/api/contracts", content=json.dumps(tank_fill),
                          headers={**bearer(ApiRole.OPERATOR), "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    store.journal.insert([_inputs(s, level=[s / 10, "good", None]) for s in range(1, 11)])
    store.devices.update("pump-station-7", contract="tank-fill", version=3, last_seq=10)
    body = (await client.get("/api/devices/pump-station-7/series?limit=4", headers=VIEW)).json()
    assert (body["device"], body["contract"], body["version"]) == ("pump-station-7",
                                                                   "tank-fill", 3)
    [level] = body["points"]
    assert level["unit"] == "m"
    assert level["samples"] == [[START_MS + 1000 * s, s / 10] for s in range(7, 11)]
    # a device that reports no contract yet: the units of the contracts that claim its points
    store.devices.update("pump-station-7", contract=None, version=None)
    body = (await client.get("/api/devices/pump-station-7/series?limit=4", headers=VIEW)).json()
    assert [(p["name"], p["unit"]) for p in body["points"]] == [("level", "m")]
    bad = await client.get("/api/devices/pump-station-7/series?limit=0", headers=VIEW)
    assert bad.status_code == 400
    missing = await client.get("/api/devices/nope/series", headers=VIEW)
    assert missing.status_code == 404
