"""Deployment requests over the real API (uvicorn on 127.0.0.1, a real store file), the engine
off: what is planned and stored, which requests each state allows, and what a bad body names."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from hub.api import create_app
from hub.auth import ApiRole, AuthConfig
from hub.service import HubService
from tests.contracts.fleet_docs import tank_binding, tank_design
from tests.hub.conftest import SERVER_START_TIMEOUT_S, bearer
from tests.hub.serving import serving

ADMIN, OPERATOR, VIEWER = (bearer(r) for r in (ApiRole.ADMIN, ApiRole.OPERATOR, ApiRole.VIEWER))
DEVICES = ("d1", "d2", "d3", "d4", "d5")


@pytest.fixture
async def http(service: HubService, auth_config: AuthConfig) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(service, auth_config, rollouts=False)
    async with serving(app, timeout_s=SERVER_START_TIMEOUT_S, name="uvicorn") as url, \
            httpx.AsyncClient(base_url=url) as client:
        yield client


async def _ok(r: Any, status: int = 200) -> Any:
    response = await r
    assert response.status_code == status, response.text
    return response.json()


async def _snapshot(http: httpx.AsyncClient) -> str:
    for d in DEVICES:
        await _ok(http.post("/api/devices", json={"id": d, "site": "s1", "labels": {"k": "v"}},
                            headers=ADMIN), 201)
    await _ok(http.post("/api/designs", json=tank_design(), headers=ADMIN), 201)
    await _ok(http.post("/api/bindings", json=tank_binding("all", {"site": "s1", "labels": {"k": "v"}}),
                        headers=ADMIN), 201)
    snap = await _ok(http.post("/api/snapshots", json={"target": {"labels": {"k": "v"}}},
                              headers=ADMIN), 201)
    return str(snap["id"])


async def test_a_deployment_is_planned_in_waves_canary_first_and_nothing_is_pushed(
        http: httpx.AsyncClient, service: HubService) -> None:
    sid = await _snapshot(http)
    body = {"snapshot": sid, "target": {"site": "s1"},
            "strategy": {"canary": {"devices": ["d3"]}, "waves": {"size": 2}},
            "health": {"window_s": 5, "telemetry": "level >= 1"}}
    view = await _ok(http.post("/api/deployments", json=body, headers=OPERATOR), 201)
    assert view["id"] == "dep-000001" and view["state"] == "planned" and view["actor"] == "operator-user"
    assert [(w["kind"], w["devices"]) for w in view["waves"]] == [
        ("canary", ["d3"]), ("wave", ["d1", "d2"]), ("wave", ["d4", "d5"])]
    assert all(w["gate"]["status"] == "pending" for w in view["waves"])
    assert {d["device"]: d["state"] for d in view["devices"]} == {d: "queued" for d in DEVICES}
    assert all(d["known_good"] is None for d in view["devices"])  # nothing ran before
    assert view["steps"] == [] and view["rollback"] is None
    assert [(t["from"], t["to"], t["event"]) for t in view["timeline"]] == [
        (None, "planned", "create")]
    assert service.store.contracts.find() == []  # planned: nothing issued
    listed = await _ok(http.get("/api/deployments", headers=VIEWER))
    assert [d["id"] for d in listed["deployments"]] == ["dep-000001"]
    assert "steps" not in listed["deployments"][0]
    again = await _ok(http.get("/api/deployments/dep-000001", headers=VIEWER))
    assert again == view


async def test_each_request_is_allowed_only_in_its_states_and_a_refusal_names_the_state(
        http: httpx.AsyncClient, service: HubService) -> None:
    sid = await _snapshot(http)
    await _ok(http.post("/api/deployments", json={"snapshot": sid}, headers=OPERATOR), 201)
    url = "/api/deployments/dep-000001"
    refused = await _ok(http.post(f"{url}/approve", headers=OPERATOR), 409)
    assert "planned" in refused["error"]
    assert "no failed step" in (await _ok(http.post(f"{url}/retry", headers=OPERATOR), 409))["error"]
    paused = await _ok(http.post(f"{url}/pause", headers=OPERATOR))
    assert paused["state"] == "paused" and paused["resume_to"] == "planned"
    assert (await _ok(http.post(f"{url}/resume", headers=OPERATOR)))["state"] == "planned"
    assert "paused deployment" in (await _ok(http.post(f"{url}/resume", headers=OPERATOR), 409))["error"]
    missing = await _ok(http.post(f"{url}/rollback", json={}, headers=OPERATOR), 422)
    assert missing["issues"][0]["path"] == "reason"
    done = await _ok(http.post(f"{url}/rollback", json={"reason": "wrong snapshot"}, headers=OPERATOR))
    assert done["state"] == "rolled_back"  # nothing pushed yet: nothing to undo
    assert done["rollback"]["initiated_by"] == "operator:operator-user"
    assert done["rollback"]["reason"] == "wrong snapshot"
    assert [t["event"] for t in done["timeline"]] == ["create", "pause", "resume_planned",
                                                      "rollback"]
    assert "rolled_back" in (await _ok(http.post(f"{url}/pause", headers=OPERATOR), 409))["error"]
    await _ok(http.post("/api/deployments/dep-000404/pause", headers=OPERATOR), 404)
    assert (await http.post(f"{url}/pause", headers=VIEWER)).status_code == 403
    audit = [e for e in reversed(service.store.audit.find()) if e.action.value == "deploy"]
    assert [(e.detail["request"], e.outcome.value) for e in audit] == [
        ("create", "ok"), ("approve", "refused"), ("retry", "refused"), ("pause", "ok"),
        ("resume", "ok"), ("resume", "refused"), ("rollback", "ok"), ("pause", "refused")]


@pytest.mark.parametrize(("body", "path"), [
    ({"snapshot": "nope"}, "snapshot"),
    ({"strategy": {"waves": {"size": 0}}}, "strategy.waves.size"),
    ({"strategy": {"canary": {"devices": ["zz"]}}}, "strategy.canary.devices"),
    ({"health": {"window_s": 0}}, "health.window_s"),
    ({"target": {"site": "elsewhere"}}, "target"),
    ({"colour": "red"}, "colour"),
])
async def test_a_bad_request_is_422_naming_the_field(http: httpx.AsyncClient, body: dict[str, Any],
                                                     path: str) -> None:
    sid = await _snapshot(http)
    refused = await _ok(http.post("/api/deployments", json={"snapshot": sid, **body},
                                  headers=OPERATOR), 422)
    assert refused["issues"][0]["path"] == path, refused


async def test_a_device_is_in_one_deployment_at_a_time(http: httpx.AsyncClient) -> None:
    sid = await _snapshot(http)
    await _ok(http.post("/api/deployments", json={"snapshot": sid, "target": {"devices": ["d1", "d2"]}},
                        headers=OPERATOR), 201)
    refused = await _ok(http.post("/api/deployments", json={
        "snapshot": sid, "target": {"devices": ["d2", "d3"]}}, headers=OPERATOR), 409)
    assert "d2" in refused["error"] and "dep-000001" in refused["error"]
    await _ok(http.post("/api/deployments", json={"snapshot": sid, "target": {"devices": ["d3"]}},
                        headers=OPERATOR), 201)  # other devices: fine
    await _ok(http.post("/api/deployments/dep-000001/rollback", json={"reason": "stop"},
                        headers=OPERATOR))
    await _ok(http.post("/api/deployments", json={"snapshot": sid, "target": {"devices": ["d2"]}},
                        headers=OPERATOR), 201)  # a rolled-back one holds nothing
