"""A deployment of several contracts per device (issue 13 over issue 12's snapshots): a hub
process (embedded broker, API, rollout engine) and devices on MQTT that run every contract they
are pushed side by side. Each device of the snapshot gets two contracts (tank-fill and tank-aux,
disjoint write points): each pushed at its own next version, each judged on its own journal
entries, the device counted once. Then a second snapshot whose tank-aux trips on the canary: the
canary's gate fails, the canary's tank-fill goes back to its known-good at the next version, its
tripped tank-aux stays latched (never pushed over), and the wave's device never gets it. And a
device of a wave whose tank-aux fails under the abort threshold goes back alone on both of its
contracts (one failed contract: a failed device), the deployment going on."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.contracts.fleet_docs import tank_binding, tank_design
from tests.hub.rollout_http import (deploy, fleet_agents, hub_and_agents, ok, site_snapshot,
                                    view_when)
from tests.hub.sync_helpers import SITE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BODY = {"health": {"window_s": 1}, "target": {"devices": ["r1", "r2"]},
        "strategy": {"canary": {"devices": ["r1"]}, "waves": {"size": 1}}}


async def _snapshot(http: httpx.AsyncClient, max_rpm: float, first: bool) -> str:
    """tank-fill and tank-aux on every device of the site (their writes at other addresses)."""
    if first:
        await ok(http.post("/api/designs", json=tank_design()), 201)
        await ok(http.post("/api/designs", json=tank_design(design="tank-aux")), 201)
    await ok(http.post("/api/bindings", json=tank_binding("site", {"site": SITE},
                                                          max_rpm=max_rpm)), 201)
    await ok(http.post("/api/bindings", json=tank_binding(
        "aux", {"site": SITE}, max_rpm=max_rpm, design="tank-aux",
        points={"level": {"address": 0}, "pump_speed": {"address": 30},
                "valve_open": {"address": 14}})), 201)
    return await site_snapshot(http)


def _rows(view: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["device"], d["name"]): d for d in view["devices"]}


async def test_each_contract_of_a_device_is_pushed_judged_and_rolled_back_on_its_own(
        tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2"], several=True)
    async with hub_and_agents(tmp_path, agents) as (_, http):
        first = await _snapshot(http, 1200, first=True)
        dep = await deploy(http, first, BODY)
        done = await view_when(http, dep, lambda v: v["state"] in ("complete", "rolled_back"),
                               "the first ended")
        assert done["state"] == "complete", done
        rows = _rows(done)
        assert sorted(rows) == [(d, c) for d in ("r1", "r2")
                                for c in (f"tank-aux.{d}", f"tank-fill.{d}")]
        assert {r["state"] for r in rows.values()} == {"healthy"}
        assert rows[("r1", "tank-aux.r1")]["contract"] == "tank-aux.r1@1"
        for w in done["waves"]:  # one device each, counted once over its two contracts
            assert w["gate"]["status"] == "passed"
            assert w["gate"]["counts"] == {"healthy": 1, "failed": 0, "unreachable": 0,
                                           "skipped": 0}
        assert sorted(agents[0].pushes) == ["tank-aux.r1@1", "tank-fill.r1@1"]
        assert sorted(agents[1].pushes) == ["tank-aux.r2@1", "tank-fill.r2@1"]

        agents[0].trips, agents[0].fails_only = True, "tank-aux"
        second = await _snapshot(http, 1000, first=False)
        dep = await deploy(http, second, BODY)
        done = await view_when(http, dep, lambda v: v["state"] == "rolled_back" and
                               v["step"]["status"] == "done", "the second rolled back")
        audit = await ok(http.get("/api/audit"))
    rows = _rows(done)
    fill, aux = rows[("r1", "tank-fill.r1")], rows[("r1", "tank-aux.r1")]
    # The tripped contract stays latched in its safe state (invariant 9): nothing over it.
    assert (aux["state"], aux["reason"], aux["restored"]) == ("failed", "latched: guard_trip",
                                                               None)
    # The other one goes back to its known-good, by the push path, at its next version.
    assert (fill["state"], fill["known_good"]["contract"], fill["restored"]) == (
        "rolled_back", "tank-fill.r1@1", "tank-fill.r1@3")
    assert aux["known_good"]["contract"] == "tank-aux.r1@1"
    assert sorted(agents[0].pushes) == ["tank-aux.r1@1", "tank-aux.r1@2", "tank-fill.r1@1",
                                        "tank-fill.r1@2", "tank-fill.r1@3"]
    assert agents[0].runs["tank-fill.r1"] == "tank-fill.r1@3" and agents[0].commands == []
    # The wave's device never got the second snapshot.
    assert sorted(agents[1].pushes) == ["tank-aux.r2@1", "tank-fill.r2@1"]
    assert {rows[("r2", c)]["state"] for c in ("tank-fill.r2", "tank-aux.r2")} == {"skipped"}
    why = done["rollback"]
    assert (why["initiated_by"], why["gate"], why["devices"]) == ("gate", "guard_trip", ["r1"])
    assert [(e["device"], e["contract"]) for e in why["evidence"]] == [("r1", "tank-aux.r1")]
    assert done["waves"][0]["gate"]["counts"]["failed"] == 1
    entry = next(e for e in audit if e["action"] == "deploy_rollback"
                 and e["detail"]["deployment"] == dep)
    assert (entry["reason"], entry["detail"]["devices"]) == ("guard_trip", ["r1"])


ALONE = {"health": {"window_s": 1}, "target": {"devices": ["r1", "r2", "r3", "r4"]},
         "strategy": {"canary": {"devices": ["r1"]}, "waves": {"size": 2},
                      "abort": {"failure_pct": 60, "min_executed": 1}}}
"""One failed device in three or four executed stays under the threshold (60 %)."""


async def test_a_device_failing_one_contract_goes_back_alone_on_all_of_them(
        tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2", "r3", "r4"], several=True)
    async with hub_and_agents(tmp_path, agents) as (_, http):
        first = await _snapshot(http, 1200, first=True)
        dep = await deploy(http, first, ALONE)
        await view_when(http, dep, lambda v: v["state"] == "complete", "the first complete")
        agents[2].second_writer, agents[2].fails_only = True, "tank-aux"
        second = await _snapshot(http, 1000, first=False)
        dep = await deploy(http, second, ALONE)
        done = await view_when(http, dep, lambda v: v["state"] in ("rolled_back", "complete"),
                               "the second ended")
    assert done["state"] == "complete" and done["rollback"] is None  # it went on
    gate = done["waves"][1]["gate"]
    assert (gate["status"], gate["counts"]["failed"], gate["counts"]["healthy"]) == (
        "passed", 1, 1)  # r3 counted once, failed
    rows = _rows(done)
    aux, fill = rows[("r3", "tank-aux.r3")], rows[("r3", "tank-fill.r3")]
    assert (aux["state"], aux["reason"], aux["restored"]) == ("rolled_back", "second_writer",
                                                               "tank-aux.r3@3")
    assert (aux["rollback"]["gate"], aux["rollback"]["result"]) == ("second_writer", "restored")
    # Its healthy tank-fill goes back with it, to its own known-good, naming why.
    assert (fill["state"], fill["restored"], fill["known_good"]["contract"]) == (
        "rolled_back", "tank-fill.r3@3", "tank-fill.r3@1")
    assert (fill["rollback"]["gate"], fill["rollback"]["failed_contract"],
            fill["rollback"]["result"]) == ("second_writer", "tank-aux.r3", "restored")
    assert sorted(agents[2].pushes) == ["tank-aux.r3@1", "tank-aux.r3@2", "tank-aux.r3@3",
                                        "tank-fill.r3@1", "tank-fill.r3@2", "tank-fill.r3@3"]
    assert agents[2].runs == {"tank-aux.r3": "tank-aux.r3@3", "tank-fill.r3": "tank-fill.r3@3"}
    for d in ("r2", "r4"):  # the others keep the new snapshot on both contracts
        assert {rows[(d, f"{c}.{d}")]["state"] for c in ("tank-fill", "tank-aux")} == {"healthy"}
        assert sorted(agents[int(d[1]) - 1].pushes) == [f"tank-aux.{d}@1", f"tank-aux.{d}@2",
                                                        f"tank-fill.{d}@1", f"tank-fill.{d}@2"]


def _pushed_devices(view: dict[str, Any], wave: int) -> set[str]:
    return {d["device"] for d in view["devices"] if d["wave"] == wave and d["state"] != "queued"}


async def test_a_hub_killed_mid_wave_pushes_each_contract_once_paced_per_device(
        tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2", "r3", "r4"], several=True)
    async with hub_and_agents(tmp_path, agents) as (hub, http):
        sid = await _snapshot(http, 1200, first=True)
        dep = await deploy(http, sid, {
            "health": {"window_s": 1}, "target": {"devices": ["r1", "r2", "r3", "r4"]},
            "strategy": {"canary": {"count": 1}, "waves": {"rate_per_min": 20}}})
        # Wave 1's three devices are due 3 s apart, both contracts of each together.
        await view_when(http, dep, lambda v: len(_pushed_devices(v, 1)) >= 2, "two of wave 1")
        hub.proc.kill()  # -9: no shutdown, no flush
        hub.proc.wait(10)
    async with hub_and_agents(tmp_path, agents) as (_, http):
        done = await view_when(http, dep, lambda v: v["state"] == "complete", "complete", 90)
    for a in agents:  # each contract sent once, at version 1, across both hubs
        assert sorted(a.pushes) == [f"tank-aux.{a.device}@1", f"tank-fill.{a.device}@1"], (
            a.device, a.pushes)
    assert {d["state"] for d in done["devices"]} == {"healthy"} and len(done["devices"]) == 8
    wave = [a for a in agents if a.device in done["waves"][1]["devices"]]
    for a in wave:  # a device's two contracts arrived together: paced per device, not per row
        assert abs(a.received_ms[0] - a.received_ms[1]) < 1500, (a.device, a.received_ms)
    firsts = sorted(a.received_ms[0] for a in wave)
    assert firsts[1] - firsts[0] >= 2000  # and the devices ~3 s apart (20 a minute)
