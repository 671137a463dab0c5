"""The step engine over a real hub process (embedded broker, API, rollout engine) and devices on
MQTT that journal what they accept: killed -9 mid-wave, the hub resumes the same step without
re-pushing; a failed step retried pushes only what it had not; an approval gate holds; an offline
device is unreachable, counted apart, and converges when it comes back."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hub.rollout_devices import FakeAgent, online
from tests.hub.rollout_http import (deploy, fleet_agents, hub_and_agents, ok, second_after_first,
                                    tank_snapshot, view_when)
from tests.waiting import eventually

# The bounded waits of one test (hub starts, four 45 s conditions) add up past the suite's
# 120 s default: a slow condition must fail by its own message, naming what it saw.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HEALTH = {"window_s": 1}


async def _at_the_canarys_gate(http: httpx.AsyncClient, window_s: float) -> str:
    """A deployment of the tank snapshot to r1 (canary) and r2 (one wave), once its canary's gate
    is the running step: its id."""
    dep = await deploy(http, await tank_snapshot(http), {
        "health": {"window_s": window_s}, "target": {"devices": ["r1", "r2"]},
        "strategy": {"canary": {"devices": ["r1"]}, "waves": {"size": 1}}})
    await view_when(http, dep, lambda v: v["step"] and v["step"]["name"] == "canary:gate",
                    "the canary's gate")
    return dep


def _pushed(view: dict[str, Any], wave: int) -> list[str]:
    return [d["device"] for d in view["devices"] if d["wave"] == wave and d["state"] != "queued"]


async def test_a_hub_killed_mid_wave_resumes_the_same_step_without_pushing_again(
        tmp_path: Path) -> None:
    agents = fleet_agents()
    async with hub_and_agents(tmp_path, agents) as (hub, http):
        sid = await tank_snapshot(http)
        dep = (await ok(http.post("/api/deployments", json={
            "snapshot": sid, "health": HEALTH,
            "strategy": {"canary": {"count": 1}, "waves": {"rate_per_min": 20}}}), 201))["id"]
        # Wave 1 holds the five others, pushed 3 s apart: kill the hub after two of them.
        before = await view_when(http, dep, lambda v: len(_pushed(v, 1)) >= 2, "two of wave 1")
        hub.proc.kill()  # -9: no shutdown, no flush
        hub.proc.wait(10)
    at_kill = [s for s in before["steps"] if s["name"] == "wave:1:push"][0]
    async with hub_and_agents(tmp_path, agents) as (_, http):
        done = await view_when(http, dep, lambda v: v["state"] == "complete", "complete", 90)
    steps = {s["name"]: s for s in done["steps"]}
    resumed = steps["wave:1:push"]
    assert (resumed["index"], resumed["started_ms"], resumed["attempts"]) == (
        at_kill["index"], at_kill["started_ms"], 1)  # the same step, gone on with
    assert [s["name"] for s in done["steps"]] == ["canary:push", "canary:gate", "wave:1:push",
                                                 "wave:1:gate", "verify"]
    for a in agents:  # each device was sent its contract once, at version 1, across both hubs
        assert a.pushes == [f"tank-fill.{a.device}@1"], (a.device, a.pushes)
    assert {d["state"] for d in done["devices"]} == {"healthy"}


async def test_a_failed_step_retried_pushes_only_what_it_had_not(tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2", "r3"])
    async with hub_and_agents(tmp_path, agents) as (_, http):
        sid = await tank_snapshot(http)
        # An operator's own contract on r3 holds the pump and valve: the push to r3 is refused.
        plan = await ok(http.post("/api/plans", json={"snapshot": sid, "documents": True}))
        doc = next(r for r in plan["devices"] if r["device"] == "r3")["would_get"]["document"]
        points = [{**p, "owner": "manual-r3"} if "owner" in p else p for p in doc["points"]]
        manual = await ok(http.post("/api/contracts", json={
            **doc, "contract": "manual-r3", "points": points}), 201)
        dep = (await ok(http.post("/api/deployments", json={
            "snapshot": sid, "health": HEALTH, "target": {"devices": ["r1", "r2", "r3"]},
            "strategy": {"canary": {"devices": ["r1"]}, "waves": {"size": 2}}}), 201))["id"]
        failed = await view_when(http, dep, lambda v: v["step"] and v["step"]["status"] == "failed",
                                 "the wave's push failed")
        assert failed["step"]["name"] == "wave:1:push" and failed["state"] == "wave"
        error = failed["steps"][-1]["result"]["error"]
        assert "conflicts with manual-r3@1" in error
        await ok(http.post(f"/api/deployments/{dep}/rollback", json={}), 422)
        await ok(http.post(f"/api/contracts/{manual['id']}/abort", json={"reason": "x"}))
        again = await ok(http.post(f"/api/deployments/{dep}/retry"))
        assert again["step"]["attempts"] == 2 and again["step"]["status"] == "running"
        await ok(http.post(f"/api/deployments/{dep}/retry"), 409)  # nothing failed now
        done = await view_when(http, dep, lambda v: v["state"] == "complete", "complete")
        contracts = await ok(http.get("/api/contracts"))
    push = next(s for s in done["steps"] if s["name"] == "wave:1:push")
    assert push["attempts"] == 2 and push["status"] == "done"
    assert {a.device: a.pushes for a in agents} == {
        "r1": ["tank-fill.r1@1"], "r2": ["tank-fill.r2@1"],
        "r3": ["manual-r3@1", "tank-fill.r3@1"]}  # the operator's own, then the deployment's
    issued = sorted(c["id"] for c in contracts if c["contract"].startswith("tank"))
    assert issued == ["tank-fill.r1@1", "tank-fill.r2@1", "tank-fill.r3@1"]  # none twice


async def test_a_manual_approval_holds_the_next_wave_until_approved(tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2"])
    async with hub_and_agents(tmp_path, agents) as (_, http):
        sid = await tank_snapshot(http)
        dep = (await ok(http.post("/api/deployments", json={
            "snapshot": sid, "health": HEALTH, "target": {"devices": ["r1", "r2"]},
            "strategy": {"canary": {"devices": ["r1"]}, "waves": {"size": 1},
                        "approval": "manual"}}), 201))["id"]
        held = await view_when(http, dep, lambda v: v["state"] == "paused", "paused for approval")
        assert held["step"]["name"] == "canary:approval" and held["resume_to"] == "wave"
        waited_from = time.monotonic()
        still = await view_when(http, dep, lambda v: time.monotonic() - waited_from > 3,
                                "3 s of holding")
        assert still["state"] == "paused" and _pushed(still, 1) == []
        assert agents[1].pushes == []  # r2 got nothing while the gate waited
        refused = await ok(http.post(f"/api/deployments/{dep}/resume"), 409)
        assert "approve" in refused["error"]
        await ok(http.post(f"/api/deployments/{dep}/approve"))
        last = await view_when(http, dep, lambda v: v["state"] == "paused" and
                               v["step"]["name"] == "wave:1:approval", "the last gate's approval")
        assert last["resume_to"] == "verifying" and agents[1].pushes == ["tank-fill.r2@1"]
        await ok(http.post(f"/api/deployments/{dep}/approve"))
        done = await view_when(http, dep, lambda v: v["state"] == "complete", "complete")
    approvals = [s for s in done["steps"] if s["name"].endswith(":approval")]
    assert [(s["status"], s["actor"]) for s in approvals] == [("done", "admin"), ("done", "admin")]


async def test_an_offline_device_is_unreachable_apart_then_converges_when_it_returns(
        tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2", "r3"])
    late = agents[2]
    async with hub_and_agents(tmp_path, agents[:2]) as (hub, http):
        sid = await tank_snapshot(http)
        dep = (await ok(http.post("/api/deployments", json={
            "snapshot": sid, "health": HEALTH, "target": {"devices": ["r1", "r2", "r3"]},
            "strategy": {"canary": {"devices": ["r1"]}, "waves": {"size": 2},
                        "reach_deadline_s": 2}}), 201))["id"]
        done = await view_when(http, dep, lambda v: v["state"] == "complete", "complete")
        wave = done["waves"][1]
        assert wave["gate"]["status"] == "passed"
        assert wave["gate"]["counts"] == {"healthy": 1, "failed": 0, "unreachable": 1,
                                          "skipped": 0}
        assert late.pushes == []
        async with online([late], hub.mqtt_port):
            back = await view_when(http, dep, lambda v: next(
                d for d in v["devices"] if d["device"] == "r3")["state"] == "healthy",
                "r3 converged and proven healthy")
    assert late.pushes == ["tank-fill.r3@1"]
    converge = [s for s in back["steps"] if s["name"] == "converge:r3"]
    assert converge and converge[0]["status"] == "done"
    assert back["state"] == "complete"


async def _second_deployment(tmp_path: Path, agents: list[FakeAgent],
                             canary_does: str) -> dict[str, Any]:
    """A first deployment completes over r1 (canary) and r2; then the canary misbehaves as told
    (`falls_back` or `trips`) under a second one; the second's view once it ended."""
    body = {"health": HEALTH, "target": {"devices": ["r1", "r2"]},
            "strategy": {"canary": {"devices": ["r1"]}, "waves": {"size": 1}}}
    async with hub_and_agents(tmp_path, agents) as (_, http):
        return await second_after_first(http, body, agents[0], canary_does)


async def test_a_device_that_fell_back_by_itself_fails_the_gate_and_is_left_on_its_known_good(
        tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2"])
    done = await _second_deployment(tmp_path, agents, "falls_back")  # rollout_fallback (I2)
    assert done["state"] == "rolled_back"
    rollback = done["rollback"]
    assert (rollback["initiated_by"], rollback["gate"], rollback["devices"]) == (
        "device", "rollout_fallback", ["r1"])
    assert rollback["evidence"][0]["evidence"][0]["seq"] is not None  # the journal's own entry
    rows = {d["device"]: d for d in done["devices"]}
    assert rows["r1"]["known_good"]["contract"] == "tank-fill.r1@1"
    assert (rows["r1"]["state"], rows["r1"]["restored"]) == ("rolled_back", None)
    assert rows["r2"]["state"] == "skipped"
    # The hub pushes nothing over a device's own fallback (its known-good runs, held, until an
    # operator resumes it), and nothing of the second snapshot reached the device outside the canary.
    assert agents[0].pushes == ["tank-fill.r1@1", "tank-fill.r1@2"]
    assert agents[1].pushes == ["tank-fill.r2@1"]


async def test_an_operator_pause_holds_the_deployment_in_its_step_and_resume_goes_on_with_it(
        tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2"])
    async with hub_and_agents(tmp_path, agents) as (_, http):
        dep = await _at_the_canarys_gate(http, window_s=4)
        paused = await ok(http.post(f"/api/deployments/{dep}/pause"))
        assert (paused["state"], paused["resume_to"]) == ("paused", "canary")
        gate = paused["step"]
        waited_from = time.monotonic()
        still = await view_when(http, dep, lambda v: time.monotonic() - waited_from > 6,
                                "6 s paused, past the canary's window")
        assert still["state"] == "paused" and still["step"] == gate  # nothing moved
        assert agents[1].pushes == []
        await ok(http.post(f"/api/deployments/{dep}/approve"), 409)  # no gate waits for one
        resumed = await ok(http.post(f"/api/deployments/{dep}/resume"))
        assert resumed["state"] == "canary" and resumed["step"]["index"] == gate["index"]
        done = await view_when(http, dep, lambda v: v["state"] == "complete", "complete")
    assert agents[1].pushes == ["tank-fill.r2@1"]
    assert [s["name"] for s in done["steps"]].count("canary:gate") == 1


async def test_a_canary_latched_by_a_trip_is_left_in_safe_state_not_replaced_by_automation(
        tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2"])
    done = await _second_deployment(tmp_path, agents, "trips")
    assert done["state"] == "rolled_back"
    assert (done["rollback"]["gate"], done["rollback"]["devices"]) == ("guard_trip", ["r1"])
    r1 = next(d for d in done["devices"] if d["device"] == "r1")
    assert r1["state"] == "failed" and r1["reason"].startswith("latched")
    assert r1["restored"] is None
    rollback = next(s for s in done["steps"] if s["name"] == "rollback")
    assert rollback["result"]["left_latched"] == ["r1"]
    # Invariant 9: no known-good pushed over the trip, no command: only an operator resumes it.
    assert agents[0].pushes == ["tank-fill.r1@1", "tank-fill.r1@2"] and agents[0].commands == []
    assert agents[1].pushes == ["tank-fill.r2@1"]


async def test_an_operator_rollback_mid_gate_interrupts_the_gate_and_undoes_what_it_pushed(
        tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2"])
    async with hub_and_agents(tmp_path, agents) as (_, http):
        dep = await _at_the_canarys_gate(http, window_s=300)
        await ok(http.post(f"/api/deployments/{dep}/rollback", json={"reason": "wrong day"}))
        done = await view_when(http, dep, lambda v: v["state"] == "rolled_back", "rolled back")
        await eventually(lambda: agents[0].commands, 10, "r1 told to abort")
    assert done["rollback"]["initiated_by"] == "operator:admin"
    assert done["rollback"]["reason"] == "wrong day"
    steps = {s["name"]: s for s in done["steps"]}
    assert steps["canary:gate"]["status"] == "done"
    assert steps["canary:gate"]["result"]["interrupted"] == "rolling_back"
    assert {d["device"]: d["state"] for d in done["devices"]} == {"r1": "rolled_back",
                                                                  "r2": "skipped"}
    # r1 had nothing before: its deployed contract is aborted (outputs to safe state).
    assert agents[0].pushes == ["tank-fill.r1@1"] and agents[1].pushes == []
