"""Automation never undoes a safety latch — real hub, broker, agent and tank simulator.

The field failure: after a guard trip the hub re-issued the contract ~70 times in 10 s (retries
were counted only from reconciliation records), the re-issue cleared the agent's latch and the
pump restarted by itself. Here the simulator's level is forced out of the contract's range
(5 m; the range is narrowed to 0..4.5 because the tank model clamps at its 6 m height, and 5 m
stays under the 5.5 m high-level switch, which would end the fill step), which trips the agent;
then it is put back, and the tests read the pump and valve straight from the simulator (the
device's own registers), never from the agent or the hub.
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fieldpact.loopback import DeviceSpec, LocalSite
from hub.alarms import AlarmKind
from hub.app import HubRuntime
from hub.audit import AuditAction, Outcome
from hub.policy import DEFAULT_POLICIES, FailureCategory, Policy, PolicyAction, RetryConfig
from hub.states import ContractStatus
from tests.agent.conftest import tank_document
from tests.hub.sync_helpers import contract_status

pytestmark = pytest.mark.slow

DEVICE = "tank-a"
V3 = "tank-fill@3"


def _doc(version: int = 3) -> dict[str, Any]:
    doc = tank_document(device=DEVICE, site="north-field", version=version)
    for p in doc["points"]:
        p.pop("frozen_after_ms", None)  # the level stands still while the pump is off
        if p["name"] == "level":
            p["range"] = [0, 4.5]
    return doc


def _status(site: LocalSite, cid: str) -> ContractStatus | None:
    assert site.hub is not None
    return contract_status(site.hub.store, cid)


def _pump(site: LocalSite) -> tuple[Any, Any]:
    """The device's own pump speed and valve, read from the simulator."""
    values = site.devices[DEVICE].sim.values()
    return values["pump_speed"], values["valve_open"]


def _safe(site: LocalSite) -> bool:
    return _pump(site) == (0, False)


def _live_level(site: LocalSite) -> float | None:
    assert site.hub is not None and site.hub.sync is not None
    live = site.hub.sync.live.get(DEVICE)
    value = live.values.get("level") if live is not None else None
    return float(value) if isinstance(value, (int, float)) else None


def _near(value: float | None, target: float) -> bool:
    return value is not None and abs(value - target) < 0.1  # the tank drains while idle


async def _start(site: LocalSite) -> None:
    assert site.hub is not None
    await site.hub.service.submit_contract(_doc(), "test")
    await site.wait_for("contract active", lambda: _status(site, V3) is ContractStatus.ACTIVE, 30)
    await site.wait_for("pump running", lambda: _pump(site)[0] > 0, 30)


@contextlib.asynccontextmanager
async def _started_site(tmp_path: Path, **site: Any) -> AsyncIterator[tuple[LocalSite, HubRuntime]]:
    """A loopback site (the tank, its agent, the hub) with tank-fill@3 active and the pump running."""
    spec = DeviceSpec(id=DEVICE, model="tank", initial={"level": 1.0})
    async with LocalSite(tmp_path, [spec], silence_timeout_s=30, **site) as running:
        assert running.hub is not None
        await _start(running)
        yield running, running.hub


async def _trip(site: LocalSite, cid: str) -> None:
    site.devices[DEVICE].sim.set("level", 5.0)
    await site.wait_for(f"{cid} tripped", lambda: _status(site, cid) is ContractStatus.TRIPPED, 30)


async def _heal(site: LocalSite) -> None:
    site.devices[DEVICE].sim.set("level", 2.0)
    await site.wait_for("healthy level in telemetry", lambda: _near(_live_level(site), 2.0), 30)


async def _telemetry_for(site: LocalSite, seconds: float) -> None:
    """Wait until the hub has had `seconds` of the device's telemetry (a condition on what the
    hub received, not a sleep)."""
    assert site.hub is not None and site.hub.sync is not None
    sync = site.hub.sync
    start = sync.live[DEVICE].ts_ms
    await site.wait_for(f"{seconds} s of telemetry",
                        lambda: sync.live[DEVICE].ts_ms - start >= seconds * 1000, 30 + seconds)


async def test_repeated_trips_with_the_default_policies_issue_no_new_version_and_stay_safe(
        tmp_path: Path) -> None:
    async with _started_site(tmp_path) as (site, hub):
        for _ in range(2):
            await _trip(site, V3)
            await _heal(site)
            await _telemetry_for(site, 3.0)  # healthy inputs; nothing may restart the pump
            assert _safe(site), f"the pump restarted by itself: {_pump(site)}"
            resumed = await hub.service.resume(V3, "test", "level checked on site")
            await site.wait_for("resumed", lambda: _status(site, V3) is ContractStatus.ACTIVE, 30)
            assert resumed.kind.value == "resume"
        await _trip(site, V3)
        await _heal(site)
        await _telemetry_for(site, 3.0)
        holds = [e for e in hub.store.audit.find(contract=V3) if e.action is AuditAction.REPLAN]
        highest = hub.store.contracts.highest_version("tank-fill")
        alarms = hub.store.alarms.find(device=DEVICE, kind=AlarmKind.GUARD_TRIP)
        safe_now = _safe(site)
    assert highest == 3, "a trip must not re-issue the contract under the default policies"
    assert safe_now
    assert len(holds) == 3 and all(e.detail["action"] == "hold" for e in holds)
    assert len(alarms) == 1 and alarms[0].active and "out_of_range" in alarms[0].detail


async def test_an_explicit_retry_policy_reissues_at_most_max_retries_spaced_by_the_backoff(
        tmp_path: Path) -> None:
    policies = {**DEFAULT_POLICIES,
                FailureCategory.TRIP: Policy(action=PolicyAction.RETRY, max_retries=2)}
    retry = RetryConfig(backoff_ms=2000, backoff_max_ms=60_000, settle_ms=1000)
    async with _started_site(tmp_path, policies=policies, retry=retry) as (site, hub):
        for version in (3, 4, 5):
            cid = f"tank-fill@{version}"
            await site.wait_for(f"{cid} running", lambda: _pump(site)[0] > 0, 30)
            await _trip(site, cid)
            assert _safe(site)
            await _heal(site)
            if version < 5:
                nxt = f"tank-fill@{version + 1}"
                await site.wait_for(f"{nxt} active",
                                    lambda: _status(site, nxt) is ContractStatus.ACTIVE, 30)
        await site.wait_for("escalation", lambda: hub.store.alarms.find(
            device=DEVICE, kind=AlarmKind.ESCALATED), 30)
        await _telemetry_for(site, 3.0)
        records = {v: hub.store.contracts.get(f"tank-fill@{v}") for v in (3, 4, 5)}
        waits = [e for v in (3, 4) for e in hub.store.audit.find(contract=f"tank-fill@{v}")
                 if e.action is AuditAction.REPLAN and e.detail["action"] == "wait"]
        highest = hub.store.contracts.highest_version("tank-fill")
        safe_now = _safe(site)
    assert highest == 5, "at most max_retries (2) automatic re-issues"
    assert safe_now
    assert {r.lineage for r in records.values()} == {V3}
    assert records[5].created_ms - records[4].created_ms >= retry.backoff_ms
    assert len(waits) == 2  # each re-issue first waited for the settle time after its trip
    assert records[5].document["labels"]["replanned_from"] == "tank-fill@4"


async def test_resume_is_refused_while_the_level_is_out_of_range_and_accepted_after(
        tmp_path: Path) -> None:
    async with _started_site(tmp_path) as (site, hub):
        await _trip(site, V3)
        headers = {"Authorization": f"Bearer {site.token}"}
        async with httpx.AsyncClient(base_url=site.api_url, headers=headers) as http:
            missing = await http.post(f"/api/contracts/{V3}/resume", json={})
            refused_req = await http.post(f"/api/contracts/{V3}/resume",
                                          json={"reason": "try it"})

            def refused() -> Any:
                return [e for e in hub.store.audit.find(contract=V3)
                        if e.action is AuditAction.RESUME and e.outcome is Outcome.REFUSED]
            await site.wait_for("the agent's refusal at the hub", refused, 30)
            assert _safe(site) and _status(site, V3) is ContractStatus.TRIPPED
            alarm = (await http.get("/api/alarms", params={"kind": "resume_refused"})).json()
            assert hub.sync is not None
            live = hub.sync.live
            await site.wait_for("safe mode in telemetry", lambda: live[DEVICE].mode == "safe", 30)
            view = (await http.get(f"/api/contracts/{V3}")).json()
            await _heal(site)
            accepted_req = await http.post(f"/api/contracts/{V3}/resume",
                                           json={"reason": "level back in range"})
            await site.wait_for("resumed", lambda: _status(site, V3) is ContractStatus.ACTIVE, 30)
            await site.wait_for("pump running again", lambda: _pump(site)[0] > 0, 30)
            step = site.devices[DEVICE].agent.scan.segment.step_name()  # type: ignore[union-attr]
            after = (await http.get("/api/alarms", params={"device": DEVICE})).json()
            from tests.agent.helpers import events
            journaled = events(site.devices[DEVICE].journal, "resume_refused")
    assert missing.status_code == 422 and missing.json()["issues"][0]["path"] == "reason"
    assert refused_req.status_code == 202 and accepted_req.status_code == 202
    assert len(alarm) == 1 and "out_of_range" in alarm[0]["detail"]
    assert view["status"] == "tripped" and view["engine"]["mode"] == "safe", view["engine"]
    assert view["last_resume"][0]["outcome"] == "refused"
    # The agent's own event (interface 2), with the cause that persisted, shown at the hub.
    assert journaled and journaled[0].body["cause"] == "out_of_range:level"
    assert "out_of_range:level" in alarm[0]["detail"]
    assert step == "fill"
    assert not [a for a in after if a["kind"] in ("guard_trip", "resume_refused")]


def _engine_mode(site: LocalSite) -> str | None:
    seg = site.devices[DEVICE].agent.scan.segment
    return seg.state.mode.value if seg is not None else None


async def test_a_device_that_goes_away_and_comes_back_is_not_restarted_by_the_hub(
        tmp_path: Path) -> None:
    """The field case: device gone (Modbus connections refused), trip, device back; the hub
    re-issued and the pump restarted by itself 3.7 s later."""
    from simulators.faults import Fault
    from tests.agent.helpers import events
    async with _started_site(tmp_path) as (site, hub):
        dev = site.devices[DEVICE]
        dev.sim.faults.enable(Fault.DROP)
        await site.wait_for("tripped", lambda: _status(site, V3) is ContractStatus.TRIPPED, 30)
        dev.sim.faults.disable(Fault.DROP)
        await site.wait_for("the device answering again", lambda: _near(_live_level(site), 1.0)
                            and hub.sync is not None
                            and hub.sync.live[DEVICE].ts_ms > _trip_ms(hub), 30)
        await _telemetry_for(site, 4.0)
        highest = hub.store.contracts.highest_version("tank-fill")
        mode = _engine_mode(site)
        alarms = hub.store.alarms.find(device=DEVICE, kind=AlarmKind.GUARD_TRIP)
        await site.wait_for("safe state confirmed on the device",
                            lambda: events(dev.journal, "safe_confirmed"), 30)
        registers = _pump(site)
    assert highest == 3 and mode == "safe" and len(alarms) == 1
    assert registers == (0, False)  # read straight from the simulator


def _trip_ms(hub: Any) -> int:
    return max(t.ts_ms for t in hub.store.contracts.transitions(V3) if t.to_state == "tripped")
