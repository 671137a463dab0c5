"""The hub HTTP API over real HTTP: auth, contract submission rules, commands, docs, metrics."""
from __future__ import annotations

import base64
import copy
import json
from datetime import datetime
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from contracts.inputs import CommandKind
from contracts.signing import verify_contract
from hub.api import ROUTES
from hub.auth import ApiRole
from hub.publisher import MemoryPublisher
from hub.store import HubStore, JournalRow

from .conftest import START_MS, bearer

OP, VIEW = bearer(ApiRole.OPERATOR), bearer(ApiRole.VIEWER)


def got_valid_from(view: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(view["document"]["valid_from"]).timestamp() * 1000)


async def _submit(client: httpx.AsyncClient, doc: Any, headers: dict[str, str] = OP) -> httpx.Response:
    return await client.post("/api/contracts", content=json.dumps(doc),
                             headers={**headers, "Content-Type": "application/json"})


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


async def test_api_without_or_with_unknown_token_is_401_with_www_authenticate(
        client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        r = await client.get("/api/devices", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"] == "missing or invalid bearer token"


async def test_viewer_posting_a_contract_is_403_and_nothing_is_stored(
        client: httpx.AsyncClient, tank_fill: dict[str, Any], store: HubStore) -> None:
    r = await _submit(client, tank_fill, VIEW)
    assert r.status_code == 403
    assert "needs operator" in r.json()["error"]
    assert store.contracts.find() == []


async def test_invalid_contract_is_422_listing_every_issue_path(
        client: httpx.AsyncClient, tank_fill: dict[str, Any], store: HubStore) -> None:
    bad = copy.deepcopy(tank_fill)
    del bad["version"]
    bad["points"][0]["address"] = 70000
    bad["scan_period_ms"] = 1
    bad["colour"] = "blue"
    r = await _submit(client, bad)
    assert r.status_code == 422
    paths = {i["path"] for i in r.json()["issues"]}
    assert paths == {"version", "points[0].address", "scan_period_ms", "colour"}
    assert all(i["reason"] for i in r.json()["issues"])
    assert store.contracts.find() == []
    assert store.audit.find()[0].reason == "invalid"


async def test_valid_yaml_contract_is_201_signed_stored_and_pushed(
        client: httpx.AsyncClient, tank_fill: dict[str, Any], publisher: MemoryPublisher,
        signing_key: Any) -> None:
    r = await client.post("/api/contracts", content=yaml.safe_dump(tank_fill),
                          headers={**OP, "Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pushed"
    assert r.headers["location"] == "/api/contracts/tank-fill@3"
    got = (await client.get("/api/contracts/tank-fill@3", headers=VIEW)).json()
    signed = base64.b64decode(got["signed"])
    assert publisher.contracts == [("north-field", "pump-station-7", signed)]
    contract = verify_contract(signed, signing_key.public_key(), now_ms=got_valid_from(got),
                               device="pump-station-7")
    assert (contract.contract, contract.version) == ("tank-fill", 3)


async def test_write_overlap_with_another_contract_on_the_device_is_409_naming_both(
        client: httpx.AsyncClient, tank_fill: dict[str, Any], publisher: MemoryPublisher) -> None:
    assert (await _submit(client, tank_fill)).status_code == 201
    other = copy.deepcopy(tank_fill)
    other["contract"] = "drain"
    for p in other["points"]:
        if p.get("owner") == "tank-fill":
            p["owner"] = "drain"
    r = await _submit(client, other)
    assert r.status_code == 409
    body = r.json()
    assert "drain@3" in body["error"] and "tank-fill@3" in body["error"]
    reasons = " ".join(i["reason"] for i in body["issues"])
    assert "'pump_speed' overlaps 'pump_speed' of tank-fill@3" in reasons
    assert "'valve_open' overlaps 'valve_open' of tank-fill@3" in reasons
    assert len(publisher.contracts) == 1


def _drain(tank_fill: dict[str, Any], pump_speed: dict[str, Any]) -> dict[str, Any]:
    """Another contract id on the same device owning a pump_speed point moved by `pump_speed`."""
    other = copy.deepcopy(tank_fill)
    other["contract"] = "drain"
    other["points"] = [p for p in other["points"] if p["name"] != "valve_open"]
    other["safe_state"] = {"pump_speed": 0}
    other["steps"] = [{"name": "run", "do": {"pump_speed": 100}, "for_s": 10}]
    other["expect"] = {}
    point = next(p for p in other["points"] if p["name"] == "pump_speed")
    point.update(owner="drain", **pump_speed)
    return other


async def test_write_overlap_counts_every_register_of_a_multi_register_point(
        client: httpx.AsyncClient, tank_fill: dict[str, Any]) -> None:
    assert (await _submit(client, tank_fill)).status_code == 201  # pump_speed: holding 20
    wide = _drain(tank_fill, {"address": 19, "type": "uint32", "limits": [0, 1500]})
    r = await _submit(client, wide)  # holding 19..20
    assert r.status_code == 409, r.text
    left = _drain(tank_fill, {"address": 18, "type": "uint32", "limits": [0, 1500]})
    assert (await _submit(client, left)).status_code == 201, "18..19 does not touch 20"
    right = _drain(tank_fill, {"address": 21, "type": "uint32", "limits": [0, 1500]})
    assert (await _submit(client, {**right, "version": 4})).status_code == 201, "21..22 neither"


async def test_same_device_without_overlap_is_accepted(
        client: httpx.AsyncClient, tank_fill: dict[str, Any]) -> None:
    assert (await _submit(client, tank_fill)).status_code == 201
    other = copy.deepcopy(tank_fill)
    other["contract"] = "drain"
    for p in other["points"]:
        if p.get("owner") == "tank-fill":
            p["owner"], p["address"] = "drain", p["address"] + 100
    assert (await _submit(client, other)).status_code == 201


async def test_older_or_equal_version_is_409_and_newer_supersedes(
        client: httpx.AsyncClient, tank_fill: dict[str, Any], store: HubStore) -> None:
    assert (await _submit(client, tank_fill)).status_code == 201
    for version in (2, 3):
        r = await _submit(client, {**tank_fill, "version": version})
        assert r.status_code == 409
        assert r.json()["issues"][0]["path"] == "version"
        assert f"version {version} is not newer than 3" in r.json()["error"]
        assert store.audit.find()[0].reason == "stale_version"
    assert (await _submit(client, {**tank_fill, "version": 4})).status_code == 201
    assert store.contracts.get("tank-fill@3").status == "superseded"
    assert store.contracts.get("tank-fill@4").status == "pushed"


async def test_hold_then_abort_send_commands_change_status_and_are_audited(
        client: httpx.AsyncClient, tank_fill: dict[str, Any], publisher: MemoryPublisher) -> None:
    await _submit(client, tank_fill)
    r = await client.post("/api/contracts/tank-fill@3/hold", headers=OP, json={"reason": "storm"})
    assert (r.status_code, r.json()["status"]) == (200, "held")
    r = await client.post("/api/contracts/tank-fill@3/abort", headers=OP)
    assert (r.status_code, r.json()["status"]) == (200, "aborted")
    assert [c.kind for _, _, c in publisher.commands] == [CommandKind.HOLD, CommandKind.ABORT]
    r = await client.post("/api/contracts/tank-fill@3/hold", headers=OP)
    assert r.status_code == 409
    audit = (await client.get("/api/audit?contract=tank-fill@3", headers=VIEW)).json()
    trail = [(a["action"], a["outcome"], a["actor"]) for a in reversed(audit)]
    assert trail[-3:] == [("hold", "ok", "operator-user"), ("abort", "ok", "operator-user"),
                          ("hold", "refused", "operator-user")]
    assert audit[-1]["action"] == "submit"
    assert next(a for a in audit if a["action"] == "hold")["outcome"] == "refused"


async def test_publish_failure_is_503_keeps_contract_submitted_and_audits_failure(
        client: httpx.AsyncClient, tank_fill: dict[str, Any], publisher: MemoryPublisher,
        store: HubStore) -> None:
    publisher.fail = True
    r = await _submit(client, tank_fill)
    assert r.status_code == 503
    assert store.contracts.get("tank-fill@3").status == "submitted"
    assert (store.audit.find()[0].action, store.audit.find()[0].outcome) == ("push", "failed")


async def test_unknown_contract_or_device_is_404_json(client: httpx.AsyncClient) -> None:
    for path in ("/api/contracts/none@1", "/api/devices/none", "/api/devices/none/journal"):
        r = await client.get(path, headers=VIEW)
        assert (r.status_code, r.json()["issues"]) == (404, []), path
    r = await client.post("/api/contracts/none@1/hold", headers=OP)
    assert r.status_code == 404


async def test_bad_bodies_are_400_or_415(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/contracts", content="a: [", headers={**OP, "Content-Type": "application/yaml"})
    assert r.status_code == 400 and r.json()["issues"][0]["path"] == "<body>"
    r = await client.post("/api/contracts", content='{"a": 1, "a": 2}',
                          headers={**OP, "Content-Type": "application/json"})
    assert r.status_code == 400
    r = await client.post("/api/contracts", content="x", headers={**OP, "Content-Type": "text/plain"})
    assert r.status_code == 415


async def test_device_view_and_journal_pages(client: httpx.AsyncClient, tank_fill: dict[str, Any],
                                             store: HubStore) -> None:
    await _submit(client, tank_fill)
    store.journal.insert([JournalRow(device="pump-station-7", seq=s, ts_ms=START_MS + s,
                                     kind="output", body=b"\xa1aa\x01", prev_hash=b"\x00",
                                     hash=bytes([s])) for s in range(1, 6)])
    device = (await client.get("/api/devices/pump-station-7", headers=VIEW)).json()
    assert (device["state"], device["site"]) == ("unknown", "north-field")
    page = (await client.get("/api/devices/pump-station-7/journal?from_seq=2&limit=2",
                             headers=VIEW)).json()
    assert [(e["seq"], e["body"]) for e in page] == [(2, {"a": 1}), (3, {"a": 1})]
    r = await client.get("/api/devices/pump-station-7/journal?limit=0", headers=VIEW)
    assert (r.status_code, r.json()["issues"][0]["path"]) == (400, "limit")


async def test_reconcile_request_is_202_and_recorded_for_the_sync_side(
        client: httpx.AsyncClient, tank_fill: dict[str, Any], store: HubStore) -> None:
    await _submit(client, tank_fill)
    r = await client.post("/api/contracts/tank-fill@3/reconcile", headers=OP)
    assert r.status_code == 202
    [req] = store.reconciliations.open_requests()
    assert (req.contract, req.device, req.actor) == ("tank-fill@3", "pump-station-7", "operator-user")


async def test_contract_list_filters_by_device_and_status(
        client: httpx.AsyncClient, tank_fill: dict[str, Any]) -> None:
    await _submit(client, tank_fill)
    got = (await client.get("/api/contracts?device=pump-station-7&status=pushed", headers=VIEW)).json()
    assert [c["id"] for c in got] == ["tank-fill@3"]
    assert (await client.get("/api/contracts?status=held", headers=VIEW)).json() == []
    assert (await client.get("/api/contracts?status=bogus", headers=VIEW)).status_code == 400


async def test_openapi_lists_every_route_and_method(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json", headers=VIEW)).json()
    assert doc["openapi"].startswith("3.1")
    listed = {(path, m.upper()) for path, ops in doc["paths"].items() for m in ops}
    routed = {(r.path, m) for r in ROUTES for m in (r.methods or ()) if m != "HEAD"}
    assert listed == routed
    submit = doc["paths"]["/api/contracts"]["post"]
    assert submit["x-required-role"] == "operator" and "422" in submit["responses"]
    assert doc["paths"]["/health"]["get"]["security"] == []


async def test_metrics_is_prometheus_text_with_fleet_counts_and_latency(
        client: httpx.AsyncClient, tank_fill: dict[str, Any]) -> None:
    await _submit(client, tank_fill)
    r = await client.get("/metrics", headers=VIEW)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(r.text) for s in f.samples}
    assert samples[("fieldpact_hub_contracts", (("status", "pushed"),))] == 1
    assert samples[("fieldpact_hub_devices", (("state", "unknown"),))] == 1
    assert samples[("fieldpact_hub_journal_entries_ingested_total", ())] == 0
    key = ("fieldpact_hub_api_request_seconds_count",
           (("endpoint", "submit_contract"), ("method", "POST"), ("status", "201")))
    assert samples[key] == 1
