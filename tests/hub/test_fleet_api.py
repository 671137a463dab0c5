"""Fleet configuration over the real API (uvicorn on 127.0.0.1, a real store file): designs,
bindings, snapshots, their diff, and plans that change nothing."""
from __future__ import annotations

import sqlite3
from typing import Any

import httpx
import pytest

from hub.auth import ApiRole
from hub.states import ContractEvent, DeviceEvent
from hub.store import HubStore
from tests.contracts.fleet_docs import tank_binding, tank_design
from tests.hub.conftest import StepClock, bearer
from tests.waiting import eventually

ADMIN = bearer(ApiRole.ADMIN)
DEVICES = {"pump-7": ("north", 20), "skid-2": ("north", 100), "tank-9": ("south", 7)}


async def _post(client: httpx.AsyncClient, path: str, body: Any, status: int = 201) -> Any:
    r = await client.post(path, json=body, headers=ADMIN)
    assert r.status_code == status, r.text
    return r.json()


async def _fleet(client: httpx.AsyncClient, pumps: dict[str, Any] | None = None) -> str:
    """Three devices, the tank design bound to each at its own pump register; the snapshot id."""
    for device, (site, _) in DEVICES.items():
        await _post(client, "/api/devices", {"id": device, "site": site, "labels": {"kind": "tank"}})
    await _post(client, "/api/designs", tank_design())
    for device, (_, pump) in DEVICES.items():
        await _post(client, "/api/bindings",
                    tank_binding(f"b-{device}", {"device": device}, (pumps or {}).get(device, pump)))
    snap = await _post(client, "/api/snapshots", {"target": {"labels": {"kind": "tank"}}})
    return str(snap["id"])


async def _plan(client: httpx.AsyncClient, sid: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = await _post(client, "/api/plans", {"snapshot": sid, **extra}, 200)
    return body


async def test_a_design_bound_to_three_devices_gives_three_contracts_the_hub_accepts(
        client: httpx.AsyncClient) -> None:
    sid = await _fleet(client)
    plan = await _plan(client, sid, documents=True)
    rows = {r["device"]: r for r in plan["devices"]}
    assert sorted(rows) == sorted(DEVICES) and plan["summary"]["contracts"] == 3
    for device, (site, pump) in DEVICES.items():
        row = rows[device]
        assert (row["contract"], row["action"]) == (f"tank-fill.{device}", "install")
        assert row["would_get"]["contract"] == f"tank-fill.{device}@1"
        doc = row["would_get"]["document"]
        assert (doc["device"], doc["site"]) == (device, site)
        assert {p["name"]: p["address"] for p in doc["points"]}["pump_speed"] == pump
        accepted = await client.post("/api/contracts", json=doc, headers=ADMIN)
        assert accepted.status_code == 201, accepted.text  # valid by the hub's own admission


async def test_a_binding_error_names_the_binding_and_its_field(client: httpx.AsyncClient) -> None:
    sid = await _fleet(client, pumps={"skid-2": 70000})
    plan = await _plan(client, sid)
    bad = next(r for r in plan["devices"] if r["device"] == "skid-2")
    assert not bad["eligible"] and bad["action"] == "invalid"
    issue = next(i for r in bad["ineligible"] if r["reason"] == "invalid" for i in r["issues"])
    assert issue == {"design": "tank-fill@3", "binding": "b-skid-2", "device": "skid-2",
                     "origin": "binding", "field": "points.pump_speed.address",
                     "reason": "must be within 0..65535, got 70000"}
    refused = await client.post("/api/bindings", headers=ADMIN, json=tank_binding(
        "b-x", {"device": "pump-7"}, unit_id=900))
    assert refused.status_code == 422
    assert [i["path"] for i in refused.json()["issues"]] == ["unit_id"]
    assert "binding b-x" in refused.json()["issues"][0]["reason"]
    unknown = await client.post("/api/bindings", headers=ADMIN,
                                json={**tank_binding("b-y", {"device": "pump-7"}), "design": "nope"})
    assert unknown.status_code == 422 and unknown.json()["issues"][0]["path"] == "design"


async def test_snapshots_are_byte_identical_for_the_same_inputs_and_refuse_mutation(
        client: httpx.AsyncClient, store: HubStore) -> None:
    sid = await _fleet(client)
    again = await _post(client, "/api/snapshots", {"target": {"labels": {"kind": "tank"}}}, 200)
    assert again["id"] == sid
    assert [s["id"] for s in (await client.get("/api/snapshots", headers=ADMIN)).json()["snapshots"]] == [sid]
    body = store.fleet.snapshot(sid).body
    shown = (await client.get(f"/api/snapshots/{sid}", headers=ADMIN)).json()
    assert shown["source"]["designs"] == ["tank-fill@3"] and shown["actor"] == "admin-user"
    assert len(shown["content"]["bindings"]) == 3
    for method in ("PUT", "PATCH", "DELETE"):
        r = await client.request(method, f"/api/snapshots/{sid}", headers=ADMIN, json={})
        assert r.status_code == 405, method
    for sql in ("UPDATE snapshots SET actor = 'mallory'", "DELETE FROM snapshots",
                "UPDATE designs SET document = '{}'"):
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            store.db.execute(sql)
    assert store.fleet.snapshot(sid).body == body
    dup = await client.post("/api/designs", json=tank_design(), headers=ADMIN)
    assert dup.status_code == 409  # a stored design version is never replaced


async def test_snapshot_diff_names_per_device_the_contract_fields_that_change(
        client: httpx.AsyncClient) -> None:
    a = await _fleet(client)
    await _post(client, "/api/bindings", tank_binding("b-skid-2", {"device": "skid-2"}, 101))
    await _post(client, "/api/designs", tank_design(version=4, parameters={
        "fill_level": {"type": "number", "default": 4.5, "range": [0, 6]},
        "max_rpm": {"type": "number", "range": [0, 1500]}}))
    b = (await _post(client, "/api/snapshots", {"target": {"labels": {"kind": "tank"}}}))["id"]
    diff = (await client.get(f"/api/snapshots/{a}/diff/{b}", headers=ADMIN)).json()
    by_device = {r["device"]: [f["field"] for f in r["fields"]] for r in diff["devices"]}
    assert by_device == {"pump-7": ["steps.fill.until"], "tank-9": ["steps.fill.until"],
                         "skid-2": ["points.pump_speed.address", "steps.fill.until"]}
    skid = next(r for r in diff["devices"] if r["device"] == "skid-2")
    assert skid["fields"][0] == {"field": "points.pump_speed.address", "from": 100, "to": 101}
    assert skid["design"] == {"from": "tank-fill@3", "to": "tank-fill@4"}
    same = (await client.get(f"/api/snapshots/{a}/diff/{a}", headers=ADMIN)).json()
    assert same["devices"] == [] and same["summary"]["unchanged"] == 3


def _dump(store: HubStore) -> list[str]:
    return list(store.db.conn.iterdump())


async def test_plan_shows_offline_and_tripped_devices_ineligible_and_changes_nothing(
        client: httpx.AsyncClient, store: HubStore, clock: StepClock) -> None:
    sid = await _fleet(client)
    for device in ("pump-7", "skid-2"):  # tank-9 has never been heard from: offline
        store.devices.apply_event(device, DeviceEvent.TELEMETRY, clock())
    docs = {r["device"]: r["would_get"]["document"]
            for r in (await _plan(client, sid, documents=True))["devices"]}
    tripped = (await _post(client, "/api/contracts", docs["skid-2"]))["id"]
    for event in (ContractEvent.ACCEPT, ContractEvent.START, ContractEvent.TRIP):
        store.contracts.apply_event(tripped, event, clock())
    before = _dump(store)
    plan = await _plan(client, sid)
    as_operator = await client.post("/api/plans", json={"snapshot": sid},
                                    headers=bearer(ApiRole.OPERATOR))  # a dry run: operators may
    assert as_operator.status_code == 200 and as_operator.json() == plan
    assert _dump(store) == before  # the store is unchanged, to the byte
    rows = {r["device"]: r for r in plan["devices"]}
    assert rows["pump-7"]["eligible"] and rows["pump-7"]["action"] == "install"
    assert [r["reason"] for r in rows["tank-9"]["ineligible"]] == ["offline"]
    assert [r["reason"] for r in rows["skid-2"]["ineligible"]] == ["tripped"]
    assert rows["skid-2"]["action"] == "unchanged"  # it has this configuration, latched
    assert plan["summary"] == {"devices": 3, "contracts": 3, "eligible": 1, "unchanged": 1,
                               "ineligible": 2}


async def test_plan_shows_a_write_conflict_with_another_contract_in_force(
        client: httpx.AsyncClient, store: HubStore, clock: StepClock,
        tank_fill: dict[str, Any]) -> None:
    store.devices.ensure("pump-station-7", "north-field", clock())  # configured, now heard from
    store.devices.apply_event("pump-station-7", DeviceEvent.TELEMETRY, clock())
    await _post(client, "/api/contracts", tank_fill)  # pump-station-7: holding 20, coil 13
    await _post(client, "/api/designs", tank_design())
    await _post(client, "/api/bindings", tank_binding("b", {"device": "pump-station-7"}, 20))
    sid = (await _post(client, "/api/snapshots", {"target": {"devices": ["pump-station-7"]}}))["id"]
    row = (await _plan(client, sid))["devices"][0]
    assert [r["reason"] for r in row["ineligible"]] == ["write_conflict"]
    assert "'pump_speed' overlaps 'pump_speed' of tank-fill@3" in row["ineligible"][0]["detail"]


async def test_a_targeted_device_without_a_binding_is_binding_missing_in_the_plan(
        client: httpx.AsyncClient) -> None:
    sid = await _fleet(client)
    # Registered after the snapshot was made: the snapshot's target picks it, no binding places it.
    await _post(client, "/api/devices", {"id": "tank-10", "site": "south", "labels": {"kind": "tank"}})
    rows = {r["device"]: r for r in (await _plan(client, sid))["devices"]}
    assert [r["reason"] for r in rows["tank-10"]["ineligible"]] == ["offline", "binding_missing"]
    assert rows["tank-10"]["contract"] is None and rows["tank-10"]["would_get"] is None


async def test_desired_state_needs_a_known_device_and_snapshot_and_is_audited(
        client: httpx.AsyncClient) -> None:
    sid = await _fleet(client)
    unknown = await client.put("/api/devices/ghost/desired", json={"snapshot": sid}, headers=ADMIN)
    missing = await client.put("/api/devices/pump-7/desired", json={"snapshot": "f" * 64},
                               headers=ADMIN)
    assert (unknown.status_code, missing.status_code) == (404, 422)  # the body's snapshot: 422
    assert missing.json()["issues"][0]["path"] == "snapshot"
    ok = await client.put("/api/devices/pump-7/desired", json={"snapshot": sid}, headers=ADMIN)
    assert ok.status_code == 200
    weak = await client.put("/api/devices/pump-7/desired", json={"snapshot": sid},
                            headers=bearer(ApiRole.OPERATOR))
    assert weak.status_code == 403
    audit = (await client.get("/api/audit", headers=ADMIN)).json()
    actions = [e["action"] for e in (audit["entries"] if isinstance(audit, dict) else audit)]
    for action in ("design_add", "binding_add", "snapshot_create", "desired_set"):
        assert action in actions, action


async def test_drift_says_refused_when_the_device_refused_its_desired_contract(
        client: httpx.AsyncClient, store: HubStore, clock: StepClock) -> None:
    sid = await _fleet(client)
    store.devices.apply_event("pump-7", DeviceEvent.TELEMETRY, clock())
    doc = next(r["would_get"]["document"] for r in (await _plan(client, sid, documents=True))[
        "devices"] if r["device"] == "pump-7")
    cid = (await _post(client, "/api/contracts", doc))["id"]
    assert (await client.put("/api/devices/pump-7/desired", json={"snapshot": sid},
                             headers=ADMIN)).status_code == 200

    async def why() -> str | None:
        entries = (await client.get("/api/drift", headers=ADMIN)).json()["entries"]
        return next((e["why"] for e in entries if e["device"] == "pump-7"), None)

    assert await eventually(why, 10, "a drift entry for pump-7") == "not_applied"  # pushed only
    store.contracts.apply_event(cid, ContractEvent.REFUSE, clock(), "older_version")
    await eventually(lambda: _is(why, "refused"), 10, "drift: refused")


async def _is(check: Any, value: str) -> bool:
    return bool(await check() == value)
