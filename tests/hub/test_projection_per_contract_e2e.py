"""Projection per contract, end to end: one agent runs two contracts (tank-pump owns the pump,
tank-valve the valve) on the real tank simulator, with a real hub and broker. Cut off, the device
is projected with both contracts, each from its own engine state and telemetry, shown each on its
own by the API; back, each contract's outage is reconciled on its own."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fieldpact.loopback import DeviceSpec, LocalSite
from hub.states import ContractStatus, DeviceState
from tests.agent.test_multi_contract import _pump, _valve
from tests.hub.sync_helpers import contract_status
from tests.waiting import eventually

pytestmark = pytest.mark.slow

DEVICE, SITE = "tank-a", "north-field"


async def _device(site: LocalSite) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=site.api_url) as http:
        r = await http.get(f"/api/devices/{DEVICE}",
                           headers={"Authorization": f"Bearer {site.token}"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _by_contract(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["contract"]: c for c in view.get("contracts", [])}


async def test_a_device_running_two_contracts_projects_and_reconciles_both_while_offline(
        tmp_path: Path) -> None:
    spec = DeviceSpec(id=DEVICE, model="tank", initial={"level": 1.0})
    async with LocalSite(tmp_path, [spec], silence_timeout_s=30) as site:
        hub = site.hub
        assert hub is not None
        pump = await hub.service.submit_contract(_pump(device=DEVICE, site=SITE), "test")
        valve = await hub.service.submit_contract(_valve(device=DEVICE, site=SITE), "test")
        await site.wait_for("both contracts active", lambda: all(
            contract_status(hub.store, r.id) is ContractStatus.ACTIVE for r in (pump, valve)), 20)
        await site.wait_for("device live", lambda: site.device_state(DEVICE) is DeviceState.LIVE, 20)
        seen: list[Any] = []

        async def both_reported() -> bool:
            each = _by_contract(await _device(site))
            seen[:] = [each]
            return {n: (c["step"], c["source"]) for n, c in each.items()} == {
                "tank-pump": ("run", "live"), "tank-valve": ("open", "live")}

        await eventually(both_reported, 20, "both contracts' telemetry on the hub",
                         detail=lambda: str(seen))

        await site.devices[DEVICE].cut.cut()
        await site.wait_for("projected", lambda: site.device_state(DEVICE) is DeviceState.PROJECTED, 15)
        stored = hub.store.devices.get(DEVICE).projection
        projected = _by_contract(await _device(site))

        site.devices[DEVICE].cut.restore()
        await site.wait_for("a reconciliation of each contract", lambda: {
            r.contract for r in hub.store.reconciliations.find(device=DEVICE)} == {
            "tank-pump", "tank-valve"}, 30)
        await site.wait_for("live again", lambda: site.device_state(DEVICE) is DeviceState.LIVE, 20)
        recs = {r.contract: r for r in hub.store.reconciliations.find(device=DEVICE)}
    assert sorted(stored["contracts"]) == ["tank-pump", "tank-valve"]
    assert {c["inputs"]["contract_id"] for c in stored["contracts"].values()} == {pump.id, valve.id}
    assert stored["inputs"]["contract_id"] in (pump.id, valve.id)  # the device's own, on top
    assert {n: (c["source"], c["step"], c["version"]) for n, c in projected.items()} == {
        "tank-pump": ("projection", "run", 1), "tank-valve": ("projection", "open", 1)}
    values = {n: {row["name"]: row["value"] for row in c["values"]} for n, c in projected.items()}
    assert values["tank-pump"]["pump_speed"] == 1000 and "valve_open" not in values["tank-pump"]
    assert values["tank-valve"]["valve_open"] is True and "pump_speed" not in values["tank-valve"]
    assert all(isinstance(c["confidence"], float) for c in projected.values())
    # each contract's run compared with its own projection: both stayed in their steps
    assert {n: (r.version, r.report["step_projected"], r.report["step_actual"])
            for n, r in recs.items()} == {"tank-pump": (1, "run", "run"),
                                          "tank-valve": (1, "open", "open")}
