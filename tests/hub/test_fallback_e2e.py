"""The agent's own fallback (I2) as the hub shows it — real hub (embedded broker), real agent with
lane G's fallback, real tank simulator (fieldpact.loopback): tank-fill@2 runs; @3, pushed with a
`rollout` naming @2 as its known-good, trips inside its health window; the agent runs @2 again,
latched. At the hub: @3 failed, @2 held (reinstated from superseded), the `rollout_fallback`
alarm, the agent's act audited, @3's health gate failed on it with the trip's seq; an operator's
resume then runs @2 and clears the alarm. The same when the trip and the fallback happen while
the hub is cut off: applied when the journal arrives, and nothing re-issues @3 over it.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from contracts.rollout_health import Gate, Health, HealthSpec, Verdict
from fieldpact.loopback import DeviceSpec, LocalSite
from hub.states import DeviceState
from hub.alarms import AlarmKind
from hub.audit import AuditAction
from hub.health import HealthJudge
from hub.states import ContractStatus
from tests.agent.conftest import tank_document
from tests.hub.sync_helpers import contract_status
from tests.waiting import eventually

pytestmark = pytest.mark.slow

DEVICE = "tank-a"
V2, V3 = "tank-fill@2", "tank-fill@3"


async def _running_v3(site: LocalSite) -> tuple[Any, Any, int]:
    """tank-fill@2 active, then @3 (its rollout naming @2) active: (v2, v3, @3's push time)."""
    hub = site.hub
    assert hub is not None
    v2 = await hub.service.submit_contract(_doc(2), "test")
    await eventually(lambda: contract_status(hub.store, V2) is ContractStatus.ACTIVE, 30,
                     "the known-good contract running")
    pushed_ms = hub.clock()
    v3 = await hub.service.submit_contract(_doc(3, rollout={
        "deployment": "dep-000001", "health_window_s": 60, "known_good": v2.content_hash}),
        "deployment:dep-000001")
    await eventually(lambda: contract_status(hub.store, V3) is ContractStatus.ACTIVE, 30,
                     "the new version running")
    return v2, v3, pushed_ms


@asynccontextmanager
async def _at_v3(tmp_path: Path,
                 silence_timeout_s: float) -> AsyncIterator[tuple[LocalSite, Any, Any, int]]:
    """A site of one tank device (level 1.0) running @3 over its known-good @2 (`_running_v3`):
    (the site, v2, v3, @3's push time)."""
    spec = DeviceSpec(id=DEVICE, model="tank", initial={"level": 1.0})
    async with LocalSite(tmp_path, [spec], silence_timeout_s=silence_timeout_s) as site:
        yield (site, *await _running_v3(site))


def _verdict(site: LocalSite, pushed_hash: str, pushed_ms: int, canary: bool) -> Verdict:
    """The hub's health verdict on @3 now, over a 60 s window from its push."""
    hub = site.hub
    assert hub is not None and hub.sync is not None
    return HealthJudge(hub.store, hub.sync.live).judge(
        DEVICE, V3, pushed_hash, pushed_ms, HealthSpec(window_ms=60_000), hub.clock(),
        canary=canary)


def _doc(version: int, **extra: Any) -> dict[str, Any]:
    doc = tank_document(device=DEVICE, site="north-field", version=version, **extra)
    for p in doc["points"]:
        p.pop("frozen_after_ms", None)
        if p["name"] == "level" and version == 3:
            p["range"] = [0, 4.5]  # the new version's bad setting
    return doc


async def test_a_device_that_fell_back_shows_failed_held_alarmed_audited_and_gated(
        tmp_path: Path) -> None:
    async with _at_v3(tmp_path, silence_timeout_s=30) as (site, v2, v3, pushed_ms):
        hub = site.hub
        assert hub is not None and hub.sync is not None
        site.devices[DEVICE].sim.set("level", 5.0)  # out of @3's range, within @2's
        await eventually(lambda: contract_status(hub.store, V2) is ContractStatus.HELD, 30,
                         "the known-good reinstated, held")
        failed = hub.store.contracts.get(V3)
        alarm = hub.store.alarms.find(device=DEVICE, kind=AlarmKind.ROLLOUT_FALLBACK)
        audit = [e for e in hub.store.audit.find(device=DEVICE) if e.action is AuditAction.FALLBACK]
        trips = [e.seq for e in hub.store.journal.entries(DEVICE)
                 if e.body.get("event") == "guard_trip" and e.body.get("of") == "tank-fill"]
        verdict = _verdict(site, v3.content_hash, pushed_ms, canary=True)
        site.devices[DEVICE].sim.set("level", 2.0)
        await eventually(lambda: (hub.sync is not None and DEVICE in hub.sync.live
                                  and abs(hub.sync.live[DEVICE].values.get("level", 0) - 2.0) < 0.1),
                         30, "the healed level in telemetry")
        await hub.service.resume(V2, "alice", "level checked, known-good may run")
        await eventually(lambda: contract_status(hub.store, V2) is ContractStatus.ACTIVE, 30,
                         "the known-good running after the operator's resume")
        cleared = hub.store.alarms.find(device=DEVICE, kind=AlarmKind.ROLLOUT_FALLBACK)
    assert failed.status is ContractStatus.FAILED
    assert failed.reason is not None and failed.reason.startswith("rollout_fallback: guard_trip at seq")
    assert len(alarm) == 1 and "fallback=tank-fill@2" in alarm[0].detail
    assert len(audit) == 1 and audit[0].actor == f"agent:{DEVICE}"
    assert audit[0].detail["known_good"] == v2.content_hash
    assert audit[0].detail["cause_seq"] == trips[0]
    assert audit[0].detail["tripped"] == V3 and audit[0].detail["reinstated"] == V2
    assert verdict.health is Health.FAILED and verdict.gate == Gate.ROLLOUT_FALLBACK
    assert verdict.evidence[0].value["fallback"] == V2 and verdict.evidence[1].seq == trips[0]
    assert cleared == []


async def test_a_fallback_while_the_hub_is_cut_off_is_applied_when_the_journal_arrives(
        tmp_path: Path) -> None:
    async with _at_v3(tmp_path, silence_timeout_s=3) as (site, v2, v3, pushed_ms):
        hub = site.hub
        assert hub is not None and hub.sync is not None
        dev = site.devices[DEVICE]
        await dev.cut.cut()
        await eventually(lambda: site.device_state(DEVICE) is DeviceState.PROJECTED, 20,
                         "the device projected")
        dev.sim.set("level", 5.0)
        await eventually(lambda: dev.agent.scan.segment is not None
                         and dev.agent.scan.segment.active.hash == v2.content_hash, 20,
                         "the agent on its known-good contract, hub gone")
        during = (contract_status(hub.store, V2), contract_status(hub.store, V3))
        dev.cut.restore()
        await eventually(lambda: contract_status(hub.store, V2) is ContractStatus.HELD, 30,
                         "the known-good reinstated, held, once the journal arrived")
        await eventually(lambda: site.device_state(DEVICE) is DeviceState.LIVE, 30, "live again")
        verdict = _verdict(site, v3.content_hash, pushed_ms, canary=False)
        highest = hub.store.contracts.highest_version("tank-fill")
        running = dev.agent.scan.segment.active.hash if dev.agent.scan.segment else None
        status = (contract_status(hub.store, V2), contract_status(hub.store, V3))
    assert during == (ContractStatus.SUPERSEDED, ContractStatus.ACTIVE)
    assert status == (ContractStatus.HELD, ContractStatus.FAILED)
    assert verdict.health is Health.FAILED and verdict.gate == Gate.ROLLOUT_FALLBACK
    assert highest == 3, "nothing may re-issue the tripped contract over the device's fallback"
    assert running == v2.content_hash
