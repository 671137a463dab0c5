"""The series window kept between requests (hub/series_window.py) gives the bytes a fresh fold of
the same rows gives (hub/series.py `encoded`), however the window slid: gaps in seq, repeats,
bad readings, strings, undecodable bodies and other kinds included; rows appearing inside its
span, or gone, make it read again; only the new rows are read otherwise."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx

from contracts import codec
from hub.auth import ApiRole
from hub.series import encoded
from hub.series_window import SeriesWindows
from hub.store import HubStore, JournalRow

from .conftest import START_MS, bearer

DEVICE = "pump-station-7"
UNITS = {"level": "m", "flow": "l/s"}
HEAD = {"device": DEVICE, "contract": "tank-fill", "version": 3}


def _row(rng: random.Random, seq: int) -> JournalRow:
    kind = rng.choice(["input"] * 6 + ["keyframe", "output"])
    values: dict[str, Any] = {}
    for name in ("level", "flow", "mode", "high_level"):
        if rng.random() < 0.6:
            good = rng.random() < 0.85
            value = {"level": rng.choice([1.0, 1.5, 2.0]), "flow": rng.choice([0, 3, 3.5]),
                     "mode": "auto", "high_level": rng.random() < 0.5}[name]
            values[name] = [value, "good", None] if good else [0, "bad", "timeout"]
    body: Any = {"values": values}
    if kind == "keyframe":
        body = {"values": values, "outputs": {}, "step": None, "mode": "running"}
    elif kind == "output":
        body = {"writes": {"pump_speed": 1200}}
    raw = b"\xff\xfe" if rng.random() < 0.03 else codec.canonical_dumps(body)
    return JournalRow(device=DEVICE, seq=seq, ts_ms=START_MS + 100 * seq, kind=kind, body=raw,
                      prev_hash=b"\x00", hash=seq.to_bytes(8, "big"))


def _span(head: dict[str, Any], rows: list[JournalRow], from_seq: int) -> dict[str, Any]:
    return {**head, "from_seq": from_seq, "from_ms": rows[0].ts_ms if rows else None,
            "to_seq": rows[-1].seq if rows else from_seq - 1}


def _fresh(store: HubStore, last_seq: int, limit: int) -> bytes:
    from_seq = max(0, last_seq - limit + 1)
    rows = store.journal.rows(DEVICE, from_seq, limit)
    return encoded(_span(HEAD, rows, from_seq), rows, UNITS)


def test_a_sliding_window_encodes_what_a_fresh_fold_of_its_rows_does(tmp_path: Path) -> None:
    rng = random.Random(12)
    windows = SeriesWindows()
    with HubStore.open(tmp_path / "hub.db") as store:
        seq = 0
        for step in range(120):
            grow = rng.choice([0, 1, 1, 2, 5, 40])
            rows = []
            for _ in range(grow):
                seq += rng.choice([1, 1, 1, 1, 3])  # a declared gap now and then
                rows.append(_row(rng, seq))
            store.journal.insert(rows)
            limit = rng.choice([50, 50, 50, 7])
            got = windows.request(store, DEVICE, seq, limit, HEAD, UNITS)[0]()
            assert got == _fresh(store, seq, limit), (step, limit)


def test_rows_inside_the_span_that_appear_or_go_make_it_read_again(tmp_path: Path) -> None:
    rng = random.Random(3)
    windows = SeriesWindows()
    with HubStore.open(tmp_path / "hub.db") as store:
        store.journal.insert([_row(rng, s) for s in range(1, 41) if s not in (20, 21)])
        assert windows.request(store, DEVICE, 40, 30, HEAD, UNITS)[0]() == _fresh(store, 40, 30)
        store.journal.insert([_row(rng, 20), _row(rng, 21)])  # a resent range, inside the span
        assert windows.request(store, DEVICE, 40, 30, HEAD, UNITS)[0]() == _fresh(store, 40, 30)
        store.db.execute("DELETE FROM journal WHERE device = ? AND seq = 30", [DEVICE])
        assert windows.request(store, DEVICE, 40, 30, HEAD, UNITS)[0]() == _fresh(store, 40, 30)


def test_only_the_new_rows_are_read_and_decoded(tmp_path: Path) -> None:
    rng = random.Random(5)
    decoded: list[int] = []

    def read(row: JournalRow) -> Any:
        from hub.series import readings
        decoded.append(row.seq)
        return readings(row)
    windows = SeriesWindows(read)
    with HubStore.open(tmp_path / "hub.db") as store:
        store.journal.insert([_row(rng, s) for s in range(1, 501)])
        windows.request(store, DEVICE, 500, 100, HEAD, UNITS)[0]()
        store.journal.insert([_row(rng, s) for s in range(501, 504)])
        decoded.clear()
        assert windows.request(store, DEVICE, 503, 100, HEAD, UNITS)[0]() == _fresh(store, 503, 100)
    assert decoded and all(s > 500 for s in decoded)  # outputs are not decoded at all


async def test_the_endpoint_answers_from_the_window_as_the_journal_grows(
        client: httpx.AsyncClient, store: HubStore) -> None:
    rng = random.Random(8)
    store.devices.ensure(DEVICE, "north-field", START_MS)
    for last in (30, 31, 35, 80):
        store.journal.insert([_row(rng, s) for s in range(store.devices.get(DEVICE).last_seq + 1,
                                                          last + 1)])
        store.devices.update(DEVICE, last_seq=last)
        r = await client.get(f"/api/devices/{DEVICE}/series?limit=20",
                             headers=bearer(ApiRole.VIEWER))
        assert r.status_code == 200
        rows = store.journal.rows(DEVICE, last - 19, 20)
        assert r.content == encoded(_span({"device": DEVICE, "contract": None, "version": None},
                                          rows, last - 19), rows, {})


async def test_a_client_that_accepts_gzip_gets_the_same_body_gzipped(
        client: httpx.AsyncClient, store: HubStore) -> None:
    import gzip
    rng = random.Random(9)
    store.devices.ensure(DEVICE, "north-field", START_MS)
    store.journal.insert([_row(rng, s) for s in range(1, 61)])
    store.devices.update(DEVICE, last_seq=60)
    url = f"/api/devices/{DEVICE}/series"
    plain = await client.get(url, headers={**bearer(ApiRole.VIEWER), "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["vary"] == "Accept-Encoding"
    for _ in range(2):  # made once, then the same bytes again
        async with client.stream("GET", url, headers={**bearer(ApiRole.VIEWER),
                                                      "Accept-Encoding": "gzip"}) as r:
            raw = b"".join([part async for part in r.aiter_raw()])
        assert r.headers["content-encoding"] == "gzip"
        rows = store.journal.rows(DEVICE, 0, 500)
        assert gzip.decompress(raw) == plain.content == encoded(
            _span({"device": DEVICE, "contract": None, "version": None}, rows, 0), rows, {})


async def test_after_seq_answers_only_the_rows_after_it_with_the_windows_span(
        client: httpx.AsyncClient, store: HubStore) -> None:
    rng = random.Random(10)
    store.devices.ensure(DEVICE, "north-field", START_MS)
    store.journal.insert([_row(rng, s) for s in range(1, 51)])
    store.devices.update(DEVICE, last_seq=50)
    url, view = f"/api/devices/{DEVICE}/series", bearer(ApiRole.VIEWER)
    full = (await client.get(url, params={"limit": 20}, headers=view)).json()
    assert (full["from_seq"], full["to_seq"]) == (31, 50)
    head = {"device": DEVICE, "contract": None, "version": None}
    for after, want_from in ((50, 51), (45, 46), (3, 31)):  # before the window: all of it
        r = await client.get(url, params={"limit": 20, "after_seq": after}, headers=view)
        rows = store.journal.rows(DEVICE, want_from, 20)
        span = {**head, "from_seq": 31, "from_ms": full["from_ms"],
                "to_seq": rows[-1].seq if rows else after, "after_seq": after}
        assert r.content == encoded(span, rows, {}), after
    top = 2**63 - 1  # the largest the API takes (schemathesis found the 500 it gave)
    r = await client.get(url, params={"limit": 20, "after_seq": top}, headers=view)
    assert r.status_code == 200, r.text[:300]
    assert r.content == encoded({**head, "from_seq": 31, "from_ms": full["from_ms"],
                                 "to_seq": top, "after_seq": top}, [], {})
    bad = await client.get(url, params={"after_seq": "x"}, headers=view)
    assert bad.status_code == 400 and "after_seq" in bad.text
