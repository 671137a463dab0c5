"""Deployments end to end: a real hub (embedded broker, API over HTTP, the rollout engine), real
agents and tank simulators (fieldpact/loopback.py). Health is proven by each device's own
journal and telemetry, never by "pushed"."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fieldpact.loopback import DeviceSpec, LocalSite
from hub.audit import AuditAction
from tests.contracts.fleet_docs import tank_binding, tank_design
from tests.waiting import eventually

pytestmark = pytest.mark.slow

SITE = "north-field"
DEVICES = ("d1", "d2", "d3")
HEALTH = {"window_s": 8, "telemetry": "pump_speed <= 1000"}
"""The gate: 8 s without a trip, and the pump's read-back never above 1,000 rpm (the pump ramps
at 300 rpm/s, so a setpoint of 1,400 crosses it within 4 s of the start, well in the window)."""


async def _ok(r: Any, status: int = 200) -> Any:
    response = await r
    assert response.status_code == status, response.text
    return response.json()


async def _snapshot(http: httpx.AsyncClient, max_rpm: float) -> str:
    """The tank design on every device of the site, its pump setpoint `max_rpm`."""
    binding = tank_binding("site", {"site": SITE}, max_rpm=max_rpm)
    binding["points"]["valve_open"] = {"address": 13}  # the simulator's coil
    await _ok(http.post("/api/bindings", json=binding), 201)
    snap = await _ok(http.post("/api/snapshots", json={"target": {"sites": [SITE]}}), 201)
    return str(snap["id"])


async def _deployment(http: httpx.AsyncClient, dep: str, states: tuple[str, ...],
                      timeout_s: float = 60) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        view: dict[str, Any] = await _ok(http.get(f"/api/deployments/{dep}"))
        return view if view["state"] in states else None
    found: dict[str, Any] = await eventually(reached, timeout_s, f"{dep} in {states}")
    return found


async def _site_and_design(site: LocalSite, http: httpx.AsyncClient) -> None:
    await site.wait_for("devices live", lambda: all(site.device_state(d) is not None
                                                    for d in DEVICES), 30)
    await _ok(http.post("/api/designs", json=tank_design(scan_period_ms=100)), 201)


def _specs() -> list[DeviceSpec]:
    return [DeviceSpec(id=d, model="tank", initial={"level": 1.0}) for d in DEVICES]


async def test_a_healthy_canary_then_waves_complete_on_proof_from_each_journal(
        tmp_path: Path) -> None:
    async with LocalSite(tmp_path, _specs(), site=SITE, silence_timeout_s=30) as site:
        assert site.hub is not None
        async with httpx.AsyncClient(base_url=site.api_url, timeout=10, headers={
                "Authorization": f"Bearer {site.token}"}) as http:
            await _site_and_design(site, http)
            sid = await _snapshot(http, max_rpm=900)
            created = await _ok(http.post("/api/deployments", json={
                "snapshot": sid, "strategy": {"canary": {"devices": ["d2"]}, "waves": {"size": 1}},
                "health": HEALTH}), 201)
            done = await _deployment(http, created["id"], ("complete", "rolling_back",
                                                           "rolled_back", "failed"), 90)
    assert done["state"] == "complete", done
    assert [(w["devices"], w["gate"]["status"]) for w in done["waves"]] == [
        (["d2"], "passed"), (["d1"], "passed"), (["d3"], "passed")]
    assert {d["device"]: (d["state"], d["contract"]) for d in done["devices"]} == {
        d: ("healthy", f"tank-fill.{d}@1") for d in DEVICES}
    names = [s["name"] for s in done["steps"]]
    assert names == ["canary:push", "canary:gate", "wave:1:push", "wave:1:gate", "wave:2:push",
                     "wave:2:gate", "verify"]
    assert all(s["status"] == "done" and s["attempts"] == 1 for s in done["steps"])
    # Healthy on proof: every device's evidence is its journal's acceptance of that content hash.
    for d in done["devices"]:
        accepted = [e for e in d["evidence"] if e["what"] == "accepted"]
        assert accepted and accepted[0]["seq"] is not None
    # Pushed one after the other: wave 1 only once the canary's gate had passed.
    steps = {s["name"]: s for s in done["steps"]}
    assert steps["wave:1:push"]["started_ms"] >= steps["canary:gate"]["finished_ms"]


async def test_a_canary_that_fails_its_gate_rolls_back_and_no_other_device_gets_the_snapshot(
        tmp_path: Path) -> None:
    async with LocalSite(tmp_path, _specs(), site=SITE, silence_timeout_s=30) as site:
        assert site.hub is not None
        store = site.hub.store
        async with httpx.AsyncClient(base_url=site.api_url, timeout=10, headers={
                "Authorization": f"Bearer {site.token}"}) as http:
            await _site_and_design(site, http)
            good = await _snapshot(http, max_rpm=900)
            first = await _ok(http.post("/api/deployments", json={
                "snapshot": good, "strategy": {"canary": {"count": 1}, "waves": {"size": 5}},
                "health": HEALTH}), 201)
            assert (await _deployment(http, first["id"], ("complete",), 90))["state"] == "complete"
            bad = await _snapshot(http, max_rpm=1400)  # the bad setpoint
            second = await _ok(http.post("/api/deployments", json={
                "snapshot": bad, "strategy": {"canary": {"devices": ["d1"]}, "waves": {"size": 5}},
                "health": HEALTH}), 201)
            done = await _deployment(http, second["id"], ("rolled_back", "complete", "failed"), 90)
            # The canary is back on its known-good configuration, as its own journal shows.
            restored = next(d for d in done["devices"] if d["device"] == "d1")["restored"]
            await site.wait_for("d1 reports its restored contract", lambda: (
                store.devices.get("d1").contract, store.devices.get("d1").version) == (
                "tank-fill.d1", int(restored.rpartition("@")[2])), 30)
            speed = await site.wait_for("d1's pump back at the known-good setpoint", lambda: (
                site.devices["d1"].sim.values().get("pump_speed") == 900), 30)
            versions = {d: [c.version for c in store.contracts.find(device=d)] for d in DEVICES}
            audit = [e for e in store.audit.find(limit=500)
                     if e.action is AuditAction.DEPLOY_ROLLBACK]
    assert speed
    assert done["state"] == "rolled_back", done
    rollback = done["rollback"]
    assert rollback["initiated_by"] == "gate" and rollback["gate"] == "telemetry"
    assert rollback["devices"] == ["d1"]
    evidence = rollback["evidence"][0]["evidence"]
    assert any(e["what"] == "pump_speed" and e["value"] > 1000 for e in evidence), evidence
    states = {d["device"]: d["state"] for d in done["devices"]}
    assert states == {"d1": "rolled_back", "d2": "skipped", "d3": "skipped"}
    assert restored == "tank-fill.d1@3"  # @1 the good one, @2 the bad one, @3 the good again
    # No device outside the canary ever got the bad snapshot: no version 2 was issued to them.
    assert versions == {"d1": [1, 2, 3], "d2": [1], "d3": [1]}
    assert [s["name"] for s in done["steps"]] == ["canary:push", "canary:gate", "rollback"]
    assert audit and audit[0].detail["gate"] == "telemetry" and \
        audit[0].detail["snapshot"] == bad
