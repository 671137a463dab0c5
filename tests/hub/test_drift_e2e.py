"""Drift from what a device reports, over a real broker and the real API: a hub with its embedded
broker and sync side, the API under uvicorn, and a device speaking MQTT (birth, telemetry, a
journal) as an agent does."""
from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from contracts.chain import GENESIS, EntryKind, make_entry
from contracts.topics import Channel
from contracts.wire import Birth, Telemetry
from hub.alarms import AlarmKind
from hub.api import create_app
from hub.app import HubRuntime
from hub.auth import ApiRole, AuthConfig, Token, hash_token
from tests.contracts.fleet_docs import tank_binding, tank_design
from tests.hub.serving import serving
from tests.hub.sync_helpers import SITE, batch, device_client, hub_config, publish
from tests.waiting import eventually

TOKEN = "drift-admin"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@contextlib.asynccontextmanager
async def _hub(tmp_path: Path) -> AsyncIterator[tuple[HubRuntime, httpx.AsyncClient]]:
    """The hub's MQTT side running, its API served; the drift alarm at once (threshold 0)."""
    cfg = replace(hub_config(tmp_path), auth=AuthConfig(tokens=(
        Token(name="admin", sha256=hash_token(TOKEN), role=ApiRole.ADMIN),)))
    hub = HubRuntime(cfg)
    try:
        async with hub.running(), serving(create_app(hub.service, cfg.auth,
                                                     drift_alarm_after_ms=0)) as url:
            async with httpx.AsyncClient(base_url=url, headers=HEADERS) as http:
                yield hub, http
    finally:
        hub.close()


async def _ok(r: Any, status: int = 200) -> Any:
    response = await r
    assert response.status_code == status, response.text
    return response.json()


def _status(contract: str | None, version: int | None) -> bytes:
    return Birth(device="d1", site=SITE, boot_id="b" * 32, contract=contract, version=version,
                 last_seq=0).to_bytes()


def _telemetry(contract: str, version: int) -> bytes:
    return Telemetry(ts_ms=time.time_ns() // 1_000_000, values=(), mode="running", step="fill",
                     seq=0, contract=contract, version=version).to_bytes()


async def _drift(http: httpx.AsyncClient, want: dict[str, Any]) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        entries = (await _ok(http.get("/api/drift")))["entries"]  # [] until first evaluated
        return next((e for e in entries if all(e[k] == v for k, v in want.items())), None)
    found: dict[str, Any] = await eventually(check, 10, f"drift entry with {want}")
    return found


async def test_drift_appears_when_the_device_runs_another_contract_and_clears_on_the_desired_one(
        tmp_path: Path) -> None:
    async with _hub(tmp_path) as (hub, http):
        await _ok(http.post("/api/designs", json=tank_design()), 201)
        await _ok(http.post("/api/bindings", json=tank_binding("b-d1", {"device": "d1"})), 201)
        desired = (await _ok(http.post("/api/snapshots", json={"target": {"devices": ["d1"]}}), 201))["id"]
        await _ok(http.post("/api/bindings", json=tank_binding("b-d1", {"device": "d1"},
                                                                max_rpm=900)), 201)
        other = (await _ok(http.post("/api/snapshots", json={"target": {"devices": ["d1"]}}), 201))["id"]
        await _ok(http.put("/api/devices/d1/desired", json={"snapshot": desired}))
        entry = await _drift(http, {"in_sync": False})
        assert entry["why"] in ("offline", "not_applied") and entry["contract"] == "tank-fill.d1"

        # Another configuration of the same contract, submitted by hand: pushed is not running.
        plan = await _ok(http.post("/api/plans", json={"snapshot": other, "documents": True}))
        hand = plan["devices"][0]["would_get"]["document"]
        await _ok(http.post("/api/contracts", json=hand), 201)
        assert (await _drift(http, {"in_sync": False}))["observed"]["contract"] is None
        async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
            await publish(dev, "d1", Channel.STATUS, _status("tank-fill.d1", 1), retain=True)
            await publish(dev, "d1", Channel.TELEMETRY, _telemetry("tank-fill.d1", 1))
            drifting = await _drift(http, {"why": "manual_push"})
            assert drifting["observed"]["contract"] == "tank-fill.d1@1"
            assert drifting["since_ms"] == entry["since_ms"]  # out of sync all along: why changed
            assert drifting["alarm_at_ms"] == drifting["since_ms"]  # threshold 0: due at once
            alarms = hub.store.alarms.find(kind=AlarmKind.DRIFT)
            assert [a.device for a in alarms] == ["d1"] and "manual_push" in alarms[0].detail

            # The desired configuration, pushed and then reported: telemetry and the journal.
            plan = await _ok(http.post("/api/plans", json={"snapshot": desired, "documents": True}))
            row = plan["devices"][0]
            assert row["action"] == "update" and row["would_get"]["contract"] == "tank-fill.d1@2"
            assert [c["field"] for c in row["changes"]] == ["points.pump_speed.limits",
                                                            "steps.fill.do.pump_speed"]
            record = await _ok(http.post("/api/contracts", json=row["would_get"]["document"]), 201)
            # Pushed is not running: the device still reports version 1, older than the desired.
            older = await _drift(http, {"why": "older_version"})
            assert older["in_sync"] is False and older["since_ms"] == entry["since_ms"]
            accepted = make_entry(GENESIS, 1, time.time_ns() // 1_000_000, EntryKind.CONTRACT, {
                "event": "accepted", "contract": "tank-fill.d1", "version": 2,
                "hash": record["content_hash"]})
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", [accepted]))
            await publish(dev, "d1", Channel.TELEMETRY, _telemetry("tank-fill.d1", 2))
            synced = await _drift(http, {"in_sync": True})
        assert synced["observed"]["hash"] == record["content_hash"]
        assert synced["why"] is None and synced["alarm_at_ms"] is None
        assert synced["since_ms"] > entry["since_ms"]  # in sync since it reported the desired one
        assert hub.store.alarms.find(kind=AlarmKind.DRIFT) == []
        summary = (await _ok(http.get("/api/drift")))["summary"]
        assert summary["in_sync"] == 1 and summary["drifting"] == 0 and summary["alarmed"] == 0


def _accepted(seq: int, prev: bytes, contract: str, version: int, digest: str) -> Any:
    return make_entry(prev, seq, time.time_ns() // 1_000_000, EntryKind.CONTRACT, {
        "event": "accepted", "contract": contract, "version": version, "hash": digest})


async def test_a_device_running_two_desired_contracts_has_a_row_for_each_judged_on_its_own(
        tmp_path: Path) -> None:
    async with _hub(tmp_path) as (hub, http):
        await _ok(http.post("/api/designs", json=tank_design()), 201)
        await _ok(http.post("/api/designs", json=tank_design(design="tank-drain")), 201)
        await _ok(http.post("/api/bindings", json=tank_binding("b-fill", {"device": "d1"})), 201)
        await _ok(http.post("/api/bindings", json=tank_binding(
            "b-drain", {"device": "d1"}, unit_id=2, design="tank-drain")), 201)  # no overlap
        sid = (await _ok(http.post("/api/snapshots", json={"target": {"devices": ["d1"]}}),
                         201))["id"]
        await _ok(http.put("/api/devices/d1/desired", json={"snapshot": sid}))
        plan = await _ok(http.post("/api/plans", json={"snapshot": sid, "documents": True}))
        records = {}
        for row in plan["devices"]:
            doc = row["would_get"]["document"]
            records[doc["contract"]] = await _ok(http.post("/api/contracts", json=doc), 201)
        assert sorted(records) == ["tank-drain.d1", "tank-fill.d1"]
        fill, drain = records["tank-fill.d1"], records["tank-drain.d1"]
        async with device_client("127.0.0.1", hub.broker.port, "d1") as dev:
            birth = Birth(device="d1", site=SITE, boot_id="b" * 32, contract="tank-fill.d1",
                          version=1, last_seq=0,
                          contracts=(("tank-fill.d1", 1), ("tank-drain.d1", 1)))
            await publish(dev, "d1", Channel.STATUS, birth.to_bytes(), retain=True)
            first = _accepted(1, GENESIS, "tank-fill.d1", 1, fill["content_hash"])
            second = _accepted(2, first.hash, "tank-drain.d1", 1, drain["content_hash"])
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", [first, second]))
            await publish(dev, "d1", Channel.TELEMETRY, _telemetry("tank-fill.d1", 1))
            both = await _drift(http, {"contract": "tank-drain.d1", "in_sync": True})
            assert both["observed"] == {**both["observed"], "contract": "tank-drain.d1@1",
                                        "hash": drain["content_hash"]}
            await _drift(http, {"contract": "tank-fill.d1", "in_sync": True})

            # tank-drain replaced by hand with another configuration, accepted by the device:
            # its row drifts (manual_push), tank-fill's stays in sync.
            hand = (await _ok(http.post("/api/plans", json={"snapshot": sid, "documents": True})))
            doc = next(r["would_get"]["document"] for r in hand["devices"]
                       if r["contract"] == "tank-drain.d1")
            doc = {**doc, "version": 2, "tolerance": {"timing_s": 60, "values": {"level": 0.25}}}
            other = await _ok(http.post("/api/contracts", json=doc), 201)
            third = _accepted(3, second.hash, "tank-drain.d1", other["version"],
                              other["content_hash"])
            await publish(dev, "d1", Channel.JOURNAL, batch("d1", [third]))
            drifting = await _drift(http, {"contract": "tank-drain.d1", "why": "manual_push"})
            assert drifting["observed"]["contract"] == f"tank-drain.d1@{other['version']}"
        entries = (await _ok(http.get("/api/drift")))["entries"]
        assert {(e["contract"], e["in_sync"]) for e in entries} == {
            ("tank-fill.d1", True), ("tank-drain.d1", False)}
        assert [a.device for a in hub.store.alarms.find(kind=AlarmKind.DRIFT)] == ["d1"]
