"""A registered device's endpoints (hub/device_endpoints.py) over the real API (uvicorn on
127.0.0.1, a real store file): registered, refused naming the field, replaced, shown, and checked
by the plan."""
from __future__ import annotations

from typing import Any

import httpx
import pytest

from agent.endpoint_config import EndpointKind
from hub.auth import ApiRole
from hub.config import DeviceCredential
from hub.device_endpoints import ENDPOINT_KINDS, DeviceEndpoint
from hub.registry import DeviceRegistry, RegistryRefused
from hub.states import DeviceEvent
from hub.store import HubStore
from tests.contracts.fleet_docs import tank_binding, tank_design
from tests.hub.conftest import StepClock, bearer

ADMIN = bearer(ApiRole.ADMIN)
PLC = {"name": "plc", "kind": "modbus-tcp"}
LINE = {"name": "line", "kind": "modbus-rtu"}


def test_the_hub_knows_the_agents_endpoint_kinds() -> None:
    assert ENDPOINT_KINDS == tuple(k.value for k in EndpointKind)


async def _register(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/api/devices", json=body, headers=ADMIN)


async def test_a_device_is_registered_with_its_endpoints_and_shows_them(
        client: httpx.AsyncClient, store: HubStore) -> None:
    assert (await client.get("/api/devices", headers=ADMIN)).status_code == 200  # cached before
    r = await _register(client, {"id": "skid-2", "site": "north", "endpoints": [PLC, LINE]})
    assert r.status_code == 201, r.text
    assert r.json()["endpoints"] == [PLC, LINE]
    listed = (await client.get("/api/devices", headers=ADMIN)).json()
    assert {d["id"]: d["endpoints"] for d in listed}["skid-2"] == [PLC, LINE]
    shown = (await client.get("/api/devices/skid-2", headers=ADMIN)).json()
    assert shown["endpoints"] == [PLC, LINE]
    assert store.registry.endpoints()  # stored, not only cached


@pytest.mark.parametrize(("endpoints", "path"), [
    ([{"name": "plc", "kind": "profibus"}], "endpoints[0].kind"),
    ([PLC, {"name": "Bad Name", "kind": "modbus-tcp"}], "endpoints[1].name"),
    ([PLC, PLC], "endpoints[1].name"),
    ([{"name": "plc"}], "endpoints[0]"),
    ("plc", "endpoints"),
    ([PLC] * 33, "endpoints"),
])
async def test_bad_endpoints_are_refused_naming_the_field(
        client: httpx.AsyncClient, endpoints: Any, path: str) -> None:
    r = await _register(client, {"id": "skid-2", "site": "north", "endpoints": endpoints})
    assert r.status_code == 422, r.text
    assert [i["path"] for i in r.json()["issues"]] == [path]
    assert (await client.get("/api/devices/skid-2", headers=ADMIN)).status_code == 404


async def test_endpoints_are_replaced_by_an_admin_and_audited(client: httpx.AsyncClient) -> None:
    assert (await _register(client, {"id": "skid-2", "site": "north"})).status_code == 201
    path = "/api/devices/skid-2/endpoints"
    as_operator = await client.put(path, json={"endpoints": [PLC]},
                                   headers=bearer(ApiRole.OPERATOR))
    assert as_operator.status_code == 403
    r = await client.put(path, json={"endpoints": [PLC]}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["endpoints"] == [PLC], r.text
    bad = await client.put(path, json={"endpoints": [{"name": "x", "kind": "can"}]}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["issues"][0]["path"] == "endpoints[0].kind"
    assert (await client.put("/api/devices/ghost/endpoints", json={"endpoints": []},
                             headers=ADMIN)).status_code == 404
    assert (await client.get("/api/devices/skid-2", headers=ADMIN)).json()["endpoints"] == [PLC]
    listed = (await client.get("/api/devices", headers=ADMIN)).json()
    assert [d["endpoints"] for d in listed if d["id"] == "skid-2"] == [[PLC]]  # not the cached []
    audit = (await client.get("/api/audit", headers=ADMIN)).json()
    entries = audit["entries"] if isinstance(audit, dict) else audit
    # audited like the other registry writes: what the registry decides (a body refused on
    # reading is not a registry decision, as for POST /api/devices)
    assert [(e["device"], e["outcome"]) for e in entries if e["action"] == "endpoints_set"] == \
        [("skid-2", "ok")]


def test_endpoints_listed_in_hub_toml_are_pinned(store: HubStore) -> None:
    pinned = (DeviceEndpoint(name="plc", kind="modbus-tcp"),)
    reg = DeviceRegistry(store, [DeviceCredential(id="d1", site="s1", password_hash="-",
                                                  endpoints=pinned),
                                 DeviceCredential(id="d2", site="s1", password_hash="-")])
    with pytest.raises(RegistryRefused) as refused:
        reg.set_endpoints("d1", (), 1, "admin")
    assert refused.value.field == "endpoints" and refused.value.conflict
    reg.set_endpoints("d2", pinned, 1, "admin")  # a hub.toml device without any: the API may
    assert reg.get("d1").endpoints == reg.get("d2").endpoints == pinned  # type: ignore[union-attr]


async def test_plan_shows_a_point_on_an_endpoint_the_device_lacks_and_changes_nothing(
        client: httpx.AsyncClient, store: HubStore, clock: StepClock) -> None:
    for device, endpoints in (("skid-2", [LINE]), ("pump-7", [PLC]), ("tank-9", None)):
        body: dict[str, Any] = {"id": device, "site": "north", "labels": {"kind": "tank"}}
        if endpoints is not None:
            body["endpoints"] = endpoints
        assert (await _register(client, body)).status_code == 201
        store.devices.apply_event(device, DeviceEvent.TELEMETRY, clock())
    assert (await client.post("/api/designs", json=tank_design(), headers=ADMIN)).status_code == 201
    for device in ("skid-2", "pump-7", "tank-9"):
        binding = tank_binding(f"b-{device}", {"device": device}, endpoint="plc")
        assert (await client.post("/api/bindings", json=binding, headers=ADMIN)).status_code == 201
    sid = (await client.post("/api/snapshots", json={"target": {"labels": {"kind": "tank"}}},
                             headers=ADMIN)).json()["id"]
    before = list(store.db.conn.iterdump())
    r = await client.post("/api/plans", json={"snapshot": sid}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert list(store.db.conn.iterdump()) == before  # a dry run: the store is unchanged
    rows = {row["device"]: row for row in r.json()["devices"]}
    assert rows["pump-7"]["eligible"] and rows["tank-9"]["eligible"]  # none listed: unknown
    missing = rows["skid-2"]["ineligible"]
    assert {(m["reason"], m["endpoint"]) for m in missing} == {("endpoint_missing", "plc")}
    assert sorted(m["point"] for m in missing) == ["level", "pump_speed", "valve_open"]


def test_removing_an_api_device_removes_its_endpoints_too(store: HubStore) -> None:
    reg = DeviceRegistry(store)
    reg.register("d9", "s1", {}, None, 1, "admin", (DeviceEndpoint(name="plc", kind="modbus-tcp"),))
    assert reg.endpoints_by_device() == {"d9": (DeviceEndpoint(name="plc", kind="modbus-tcp"),)}
    reg.remove("d9")
    assert store.registry.endpoints() == {} and reg.endpoints_by_device() == {}
