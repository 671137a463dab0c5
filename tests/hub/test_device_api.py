"""GET /api/devices/{id} over real HTTP: its active alarms, and what one answer costs the store."""
from __future__ import annotations

import httpx

from hub.auth import ApiRole
from hub.store import HubStore

from .conftest import START_MS, bearer

VIEW = bearer(ApiRole.VIEWER)
DEVICE = "pump-station-7"


def _alarms(store: HubStore) -> None:
    """Three alarms on DEVICE (one raised twice, one acknowledged, one cleared) and one on
    another device."""
    store.devices.ensure(DEVICE, "north-field", START_MS)
    store.devices.ensure("booster-skid-2", "north-field", START_MS)
    store.alarms.raise_(DEVICE, "guard_trip", "stale:level", START_MS)
    store.alarms.raise_(DEVICE, "guard_trip", "stale:level", START_MS + 1)
    acked = store.alarms.raise_(DEVICE, "drift", "level", START_MS + 2)
    store.alarms.ack(acked, "operator-user", START_MS + 3)
    cleared = store.alarms.raise_(DEVICE, "sync_gap", "7..9", START_MS + 4)
    store.alarms.clear(cleared, START_MS + 5)
    store.alarms.raise_("booster-skid-2", "guard_trip", "stale:flow", START_MS + 6)


async def test_a_device_shows_its_active_alarms_in_id_order_with_count_and_acknowledgement(
        client: httpx.AsyncClient, store: HubStore) -> None:
    _alarms(store)
    r = await client.get(f"/api/devices/{DEVICE}", headers=VIEW)
    assert r.status_code == 200, r.text
    expected = [{"id": a.id, "kind": a.kind, "count": a.count,
                 "acknowledged": a.acked_ms is not None} for a in store.alarms.find(device=DEVICE)]
    assert [(a["kind"], a["count"], a["acknowledged"]) for a in expected] == [
        ("guard_trip", 2, False), ("drift", 1, True)]
    assert r.json()["alarms"] == expected
    other = (await client.get("/api/devices/booster-skid-2", headers=VIEW)).json()
    assert [a["kind"] for a in other["alarms"]] == ["guard_trip"]


async def test_a_device_without_alarms_shows_an_empty_list(client: httpx.AsyncClient,
                                                           store: HubStore) -> None:
    store.devices.ensure(DEVICE, "north-field", START_MS)
    r = await client.get(f"/api/devices/{DEVICE}", headers=VIEW)
    assert (r.status_code, r.json()["alarms"], r.json()["id"]) == (200, [], DEVICE)


async def test_one_device_answer_is_one_sql_statement(client: httpx.AsyncClient,
                                                      store: HubStore) -> None:
    """Every statement gives the interpreter lock up (each step and reset): under fleet load the
    MQTT thread may keep it a switch interval each time, so the answer's p99 grows with them."""
    _alarms(store)
    statements: list[str] = []
    store.db.conn.set_trace_callback(statements.append)
    try:
        r = await client.get(f"/api/devices/{DEVICE}", headers=VIEW)
    finally:
        store.db.conn.set_trace_callback(None)
    assert r.status_code == 200, r.text
    assert len(statements) == 1, statements
