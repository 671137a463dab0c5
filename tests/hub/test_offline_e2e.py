"""Offline → projected → reconciled → live, with real agents, a real broker, real simulators.

The tank runs 20x faster than the contract's `expect` model says, so while the agent is cut off it
really reaches 4 m and moves to `hold` while the hub's projection still says `fill`: reconciliation
must find the divergence, the planner must re-issue the contract from `hold`, and the agent must
accept the new version.
"""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fieldpact.loopback import DeviceSpec, LocalSite
from hub.states import ContractStatus, DeviceState
from tests.agent.conftest import tank_document
from tests.hub.sync_helpers import contract_status

pytestmark = pytest.mark.slow


def _status(site: LocalSite, cid: str) -> ContractStatus | None:
    assert site.hub is not None
    return contract_status(site.hub.store, cid)


async def test_cut_agent_is_projected_then_reconciled_and_replanned_and_live_again(tmp_path: Path) -> None:
    spec = DeviceSpec(id="tank-a", model="tank", initial={"level": 1.0}, time_scale=20.0)
    async with LocalSite(tmp_path, [spec], silence_timeout_s=30) as site:
        hub = site.hub
        assert hub is not None
        rec = await hub.service.submit_contract(
            tank_document(device="tank-a", site="north-field", version=3), "test")
        await site.wait_for("contract active", lambda: _status(site, rec.id) is ContractStatus.ACTIVE, 20)
        await site.wait_for("device live", lambda: site.device_state("tank-a") is DeviceState.LIVE, 20)

        dev = site.devices["tank-a"]
        await dev.cut.cut()
        await site.wait_for("projected", lambda: site.device_state("tank-a") is DeviceState.PROJECTED, 15)
        async with httpx.AsyncClient(base_url=site.api_url) as http:
            body = (await http.get("/api/devices/tank-a",
                                   headers={"Authorization": f"Bearer {site.token}"})).json()
        assert body["state"] == "projected"
        await site.wait_for("the agent reaching hold while offline",
                            lambda: dev.agent.scan.segment and dev.agent.scan.segment.step_name() == "hold", 40)

        dev.cut.restore()
        await site.wait_for("a reconciliation", lambda: hub.store.reconciliations.find(device="tank-a"), 30)
        await site.wait_for("live again", lambda: site.device_state("tank-a") is DeviceState.LIVE, 20)
        await site.wait_for("replanned version accepted by the agent",
                            lambda: _status(site, "tank-fill@4") in (ContractStatus.ACCEPTED,
                                                                     ContractStatus.ACTIVE), 20)
        recon = hub.store.reconciliations.find(device="tank-a")[0]
        states = [t.to_state for t in hub.store.devices.transitions("tank-a")]
        new = hub.store.contracts.get("tank-fill@4")
    assert recon.divergent and recon.action == "retry"
    assert recon.report["step_projected"] == "fill" and recon.report["step_actual"] == "hold"
    assert [s["name"] for s in new.document["steps"]] == ["hold"]
    tail = states[states.index("projected"):]
    assert tail[:4] == ["projected", "reconciling", "reconciled", "live"]
    assert body["values"] is not None, "a projected device's view carries its projection"
    assert body["values"]["source"] == "projection"
