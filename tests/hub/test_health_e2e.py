"""Health from proof over real ingested journals: a real hub (embedded broker), a real agent and
the tank simulator on loopback (fieldpact.loopback). The HealthJudge reads only what the agent's
journal brought to the hub store, the live telemetry, and the commissioning report it answered.

tank-fill with a 50 ms scan, level range narrowed to 0..4.5 (as in test_safety_e2e), no frozen
guard (a frozen level must reach the telemetry gate, not trip), started at level 1.0: the pump
ramps to 1200 rpm at 300 rpm/s and then fills at 0.016 m/s: 5 s of window raise the level by
~0.05 m (a margin of 5 over the telemetry conditions' 0.01 m; a frozen level stays at 1.0).
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from contracts.chain import EntryKind
from contracts.rollout_health import Gate, Health, HealthSpec, Verdict
from contracts.schema_serialize import format_time
from fieldpact.loopback import DeviceSpec, LocalSite
from hub.commissioning import request_report
from hub.health import HealthJudge
from hub.store import ContractRecord
from simulators.faults import Fault
from tests.agent.conftest import now_ms, tank_document
from tests.waiting import eventually

pytestmark = pytest.mark.slow

DEVICE = "tank-a"
WINDOW = HealthSpec(window_ms=4_000, min_cycles=40)


def _doc() -> dict[str, Any]:
    doc = tank_document(device=DEVICE, site="north-field", version=3)
    for p in doc["points"]:
        p.pop("frozen_after_ms", None)
        if p["name"] == "level":
            p["range"] = [0, 4.5]
    return doc


@contextlib.asynccontextmanager
async def _site(tmp_path: Path) -> AsyncIterator[LocalSite]:
    spec = DeviceSpec(id=DEVICE, model="tank", initial={"level": 1.0},
                      model_divergence_after_s=600)  # a frozen level is the telemetry gate's
    async with LocalSite(tmp_path, [spec], silence_timeout_s=30) as site:
        yield site


class Pushed:
    """One push and a judge over the hub's store (the API side's connection) and live values."""

    def __init__(self, site: LocalSite, record: ContractRecord, pushed_ms: int) -> None:
        assert site.hub is not None and site.hub.sync is not None
        self.site, self.record, self.pushed_ms = site, record, pushed_ms
        self.judge = HealthJudge(site.hub.store, site.hub.sync.live)

    def verdict(self, spec: HealthSpec = WINDOW, *, canary: bool = False) -> Verdict:
        assert self.site.hub is not None
        return self.judge.judge(DEVICE, self.record.id, self.record.content_hash, self.pushed_ms,
                                spec, self.site.hub.clock(), canary=canary)

    async def settled(self, spec: HealthSpec = WINDOW, *, canary: bool = False,
                      timeout_s: float = 30) -> Verdict:
        def done() -> Verdict | None:
            v = self.verdict(spec, canary=canary)
            return v if v.health is not Health.PENDING else None
        return await eventually(done, timeout_s, "a verdict other than pending",
                                detail=lambda: repr(self.verdict(spec, canary=canary)))

    def stored(self, event: str) -> list[int]:
        """Seqs of the hub's stored entries of the device whose body's event is `event`."""
        assert self.site.hub is not None
        found = []
        for e in self.site.hub.store.journal.entries(DEVICE):
            if e.kind in (EntryKind.TRIP, EntryKind.EVENT) and e.body.get("event") == event:
                found.append(e.seq)
        return found


async def _push(site: LocalSite, doc: dict[str, Any] | None = None) -> Pushed:
    assert site.hub is not None
    pushed_ms = site.hub.clock()
    record = await site.hub.service.submit_contract(doc or _doc(), "test")
    return Pushed(site, record, pushed_ms)


async def test_a_running_contract_is_pending_then_healthy_on_its_journal_alone(tmp_path: Path) -> None:
    spec = HealthSpec(window_ms=5_000, min_cycles=40, step="fill", telemetry="level >= 1.01")
    async with _site(tmp_path) as site:
        pushed = await _push(site)
        first = pushed.verdict(spec)
        verdict = await pushed.settled(spec)
        assert site.hub is not None
        rows = {r.seq: r for r in site.hub.store.journal.rows(DEVICE, 0, 100_000)}
    assert first.health is Health.PENDING
    assert verdict.health is Health.HEALTHY, verdict
    shown = {e.what: e for e in verdict.evidence}
    accepted, boot = rows[shown["accepted"].seq], rows[shown["boot"].seq]
    assert (accepted.kind, boot.kind) == ("contract", "boot")
    assert shown["accepted"].value == pushed.record.content_hash
    assert shown["cycles"].value >= 40  # 4 s at 50 ms: 80 on the grid, minus any overrun
    assert shown["window"].ts_ms is not None and shown["window"].ts_ms >= boot.ts_ms + 5_000
    assert shown["level"].value >= 1.01 and rows[shown["level"].seq].kind in ("input", "keyframe")


async def test_a_guard_trip_inside_the_window_fails_with_the_trip_entrys_seq(tmp_path: Path) -> None:
    async with _site(tmp_path) as site:
        pushed = await _push(site)
        await eventually(lambda: pushed.verdict().gate is None, 30, "accepted and booted")
        site.devices[DEVICE].sim.set("level", 5.0)  # out of 0..4.5: the agent trips
        verdict = await pushed.settled()
        trips = pushed.stored("guard_trip")
    assert verdict.health is Health.FAILED and verdict.gate == Gate.GUARD_TRIP, verdict
    assert verdict.evidence[0].seq == trips[0]
    assert verdict.evidence[0].value["reason"] == "out_of_range"


async def test_a_second_modbus_master_inside_the_window_fails_second_writer(tmp_path: Path) -> None:
    async with _site(tmp_path) as site:
        pushed = await _push(site)
        sim = site.devices[DEVICE].sim
        await eventually(lambda: sim.values()["pump_speed"] > 0, 30, "the pump running")
        hmi = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=1, retries=0)
        await hmi.connect()

        async def moved() -> bool:
            if pushed.stored("second_writer"):
                return True
            await hmi.write_register(20, 1000, device_id=1)  # 100 rpm, not the agent's 1200
            return False
        try:
            await eventually(moved, 20, "the agent's second_writer at the hub", every_s=0.1)
        finally:
            hmi.close()
        verdict = await pushed.settled()
        writers = pushed.stored("second_writer")
    assert verdict.health is Health.FAILED and verdict.gate == Gate.SECOND_WRITER, verdict
    assert verdict.evidence[0].seq == writers[0]
    assert verdict.evidence[0].value["point"] == "pump_speed"


async def test_a_frozen_level_fails_the_telemetry_condition_with_the_journaled_value(
        tmp_path: Path) -> None:
    spec = HealthSpec(window_ms=5_000, telemetry="level >= 1.01")
    async with _site(tmp_path) as site:
        sim = site.devices[DEVICE].sim
        sim.faults.enable(Fault.FROZEN)  # reads answer, values stand still
        pushed = await _push(site)
        boot = await eventually(lambda: next((e for e in pushed.verdict(spec).evidence
                                              if e.what == "boot"), None), 30, "the BOOT at the hub")
        assert site.hub is not None and boot.ts_ms is not None
        # A frozen level journals nothing new, so only the next keyframe (a minute on) would prove
        # the window's end: thaw the device once the window is over; its next INPUT is the proof.
        end = boot.ts_ms + spec.window_ms
        await eventually(lambda: site.hub is not None and site.hub.clock() > end + 200, 30,
                         "the window over")
        sim.faults.disable(Fault.FROZEN)
        verdict = await pushed.settled(spec)
        assert site.hub is not None
        entries = {e.seq: e for e in site.hub.store.journal.entries(DEVICE)}
    assert verdict.health is Health.FAILED and verdict.gate == Gate.TELEMETRY, verdict
    level = verdict.evidence[0]
    assert level.what == "level" and level.value == pytest.approx(1.0, abs=0.005)
    stored = entries[level.seq]  # the value is the journal's, at that seq
    assert stored.kind in (EntryKind.INPUT, EntryKind.KEYFRAME)
    assert stored.body["values"]["level"][0] == level.value


async def test_a_canary_waits_for_a_passing_commissioning_report_of_the_pushed_contract(
        tmp_path: Path) -> None:
    """The agent polls for a report only while no step drives the outputs, so the canary's
    contract is pushed to start 6 s later: the report is taken while it is pending."""
    spec = HealthSpec(window_ms=8_000, commissioning=True)
    start = now_ms() + 6_000
    doc = {**_doc(), "valid_from": format_time(start)}
    async with _site(tmp_path) as site:
        pushed = await _push(site, doc)
        await eventually(lambda: pushed.verdict(spec).gate != Gate.ACCEPTED, 30, "accepted")
        canary = pushed.verdict(spec, canary=True)
        assert site.hub is not None
        await request_report(site.hub.service, DEVICE, 1.0, "test")
        wave = await pushed.settled(spec, canary=False)  # only canaries are asked for one
        passed = await pushed.settled(spec, canary=True)
        answered = site.hub.store.commissioning.latest_answered(DEVICE)
    assert wave.health is Health.HEALTHY
    assert canary.health is Health.PENDING
    assert answered is not None and answered.ok is True
    assert passed.health is Health.HEALTHY, passed
    assert passed.evidence[-1].what == "commissioning" and passed.evidence[-1].value == "ok"


async def test_a_canary_without_a_report_stays_pending_on_the_commissioning_gate(
        tmp_path: Path) -> None:
    spec = HealthSpec(window_ms=3_000, commissioning=True)
    async with _site(tmp_path) as site:
        pushed = await _push(site)
        wave = await pushed.settled(spec, canary=False)
        canary = pushed.verdict(spec, canary=True)
    assert wave.health is Health.HEALTHY
    assert canary.health is Health.PENDING and canary.gate == Gate.COMMISSIONING
