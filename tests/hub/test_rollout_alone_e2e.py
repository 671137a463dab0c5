"""A device that fails its gate under the abort threshold is rolled back alone (issue 13): a hub
process (embedded broker, API, rollout engine) and devices on MQTT. After a first deployment
completes over r1..r4, a second goes out (canary r1, then [r2, r3], then [r4]) and r3 fails its
gate: it goes back to its known-good contract at the next version, with a typed reason shown and
audited, and the deployment goes on to r4 and completes. One whose contract tripped stays latched
in safe state instead, never pushed over."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.hub.rollout_devices import FakeAgent
from tests.hub.rollout_http import (deploy, fleet_agents, hub_and_agents, ok, second_after_first,
                                    tank_snapshot, view_when)
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BODY = {"health": {"window_s": 1}, "target": {"devices": ["r1", "r2", "r3", "r4"]},
        "strategy": {"canary": {"devices": ["r1"]}, "waves": {"size": 2},
                     "abort": {"failure_pct": 60, "min_executed": 1}}}
"""One failure in three or four executed devices stays under the threshold (60 %)."""


async def _second_with(tmp_path: Path, does: str) -> tuple[dict[str, Any], list[FakeAgent],
                                                            list[dict[str, Any]]]:
    """The second deployment's view once it ended, the agents, and r3's audit entries."""
    agents = fleet_agents(["r1", "r2", "r3", "r4"])
    async with hub_and_agents(tmp_path, agents) as (_, http):
        done = await second_after_first(http, BODY, agents[2], does)
        audit = await ok(http.get("/api/audit", params={"device": "r3"}))
    return done, agents, audit


def _r3(done: dict[str, Any]) -> dict[str, Any]:
    assert done["state"] == "complete" and done["rollback"] is None  # it went on
    wave = done["waves"][1]
    assert wave["gate"]["status"] == "passed"
    assert (wave["gate"]["counts"]["failed"], wave["gate"]["counts"]["healthy"]) == (1, 1)
    rows = {d["device"]: d for d in done["devices"]}
    assert rows["r4"]["state"] == "healthy"
    r3: dict[str, Any] = rows["r3"]
    why = r3["rollback"]
    assert (why["initiated_by"], why["scope"], why["device"], why["step"]) == (
        "gate", "device", "r3", "wave:1:gate")
    assert why["evidence"][0]["evidence"][0]["seq"] is not None  # the journal's own entry
    return r3


async def test_a_device_failing_under_the_threshold_goes_back_alone_and_the_deployment_goes_on(
        tmp_path: Path) -> None:
    done, agents, audit = await _second_with(tmp_path, "second_writer")
    r3 = _r3(done)
    assert (r3["state"], r3["reason"], r3["restored"]) == (
        "rolled_back", "second_writer", "tank-fill.r3@3")
    assert r3["known_good"]["contract"] == "tank-fill.r3@1"
    assert (r3["rollback"]["gate"], r3["rollback"]["result"], r3["rollback"]["restored"]) == (
        "second_writer", "restored", "tank-fill.r3@3")
    # Its known-good again at the next version (no `rollout` key), by the push path; the others
    # kept the new snapshot.
    assert agents[2].pushes == ["tank-fill.r3@1", "tank-fill.r3@2", "tank-fill.r3@3"]
    assert agents[2].running == "tank-fill.r3@3" and not agents[2].deployed
    assert agents[3].pushes == ["tank-fill.r4@1", "tank-fill.r4@2"]
    assert agents[1].pushes == ["tank-fill.r2@1", "tank-fill.r2@2"]
    entry = next(e for e in audit if e["action"] == "deploy_rollback")
    assert (entry["actor"], entry["reason"], entry["contract"]) == (
        f"deployment:{done['id']}", "second_writer", "tank-fill.r3@3")
    assert entry["detail"]["scope"] == "device" and entry["detail"]["devices"] == ["r3"]


async def test_a_device_tripped_under_the_threshold_stays_latched_and_is_never_pushed_over(
        tmp_path: Path) -> None:
    done, agents, audit = await _second_with(tmp_path, "trips")
    r3 = _r3(done)
    assert (r3["state"], r3["reason"], r3["restored"]) == (
        "failed", "latched: guard_trip", None)
    assert (r3["rollback"]["gate"], r3["rollback"]["result"]) == ("guard_trip", "latched")
    # Invariant 9: nothing pushed over the trip, no command: only an operator resumes it.
    assert agents[2].pushes == ["tank-fill.r3@1", "tank-fill.r3@2"] and agents[2].commands == []
    assert agents[3].pushes == ["tank-fill.r4@1", "tank-fill.r4@2"]
    assert any(e["action"] == "deploy_rollback" and e["detail"]["result"] == "latched"
               for e in audit)


async def test_a_device_failing_alone_with_nothing_before_has_the_deployments_contract_aborted(
        tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2", "r3", "r4"])
    agents[2].second_writer = True
    async with hub_and_agents(tmp_path, agents) as (_, http):
        dep = await deploy(http, await tank_snapshot(http), BODY)
        done = await view_when(http, dep, lambda v: v["state"] in ("rolled_back", "complete"),
                               "the deployment ended")
        await eventually(lambda: agents[2].commands, 10, "r3 told to abort")
    r3 = _r3(done)
    assert (r3["state"], r3["restored"], r3["known_good"]) == ("rolled_back", None, None)
    assert (r3["rollback"]["gate"], r3["rollback"]["result"]) == ("second_writer", "aborted")
    assert agents[2].pushes == ["tank-fill.r3@1"]  # nothing pushed: its contract aborted
    assert agents[3].pushes == ["tank-fill.r4@1"] and agents[3].commands == []
