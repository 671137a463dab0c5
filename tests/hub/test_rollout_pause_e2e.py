"""The strategy's pause_s between waves, end to end (issue 13): a hub process (embedded broker, API,
rollout engine) and devices on MQTT. The next wave's first push starts no earlier than pause_s
after the gate passed, the view says until when, and a hub killed -9 during the pause and started
again waits out the same pause (not a shorter one) and pushes nothing twice."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hub.rollout_devices import FakeAgent
from tests.hub.rollout_http import deploy, fleet_agents, hub_and_agents, tank_snapshot, view_when

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _body(pause_s: float) -> dict[str, Any]:
    return {"health": {"window_s": 1}, "target": {"devices": ["r1", "r2"]},
            "strategy": {"canary": {"devices": ["r1"]}, "waves": {"size": 1},
                         "pause_s": pause_s}}


def _step(view: dict[str, Any], name: str) -> dict[str, Any]:
    step: dict[str, Any] = next(s for s in view["steps"] if s["name"] == name)
    return step


async def _pausing(http: httpx.AsyncClient, pause_s: float) -> tuple[str, dict[str, Any]]:
    """A deployment over r1 (canary) and r2 (one wave) with `pause_s`; its view once the canary's
    gate passed and the wave waits out the pause."""
    dep = await deploy(http, await tank_snapshot(http), _body(pause_s))
    view = await view_when(http, dep, lambda v: v["step"] and v["step"]["name"] == "wave:1:push",
                           "the canary's gate passed")
    return dep, view


def _paused_from_the_gate(view: dict[str, Any], pause_s: float) -> int:
    """The time the wave may start: pause_s after the canary's gate passed (its finished_ms)."""
    gate = _step(view, "canary:gate")
    assert gate["result"]["gate"] == "passed"
    until = gate["finished_ms"] + int(pause_s * 1000)
    assert view["pausing_until_ms"] == until
    assert _step(view, "wave:1:push")["input"]["not_before_ms"] == until
    return int(until)


def _pushed_once_not_before(agents: list[FakeAgent], until: int) -> None:
    r1, r2 = agents
    assert r1.pushes == ["tank-fill.r1@1"] and r2.pushes == ["tank-fill.r2@1"]
    assert r2.received_ms[0] >= until, (r2.received_ms[0] - until)


async def test_the_next_wave_waits_pause_s_after_the_gate_passed_and_the_view_says_until_when(
        tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2"])
    async with hub_and_agents(tmp_path, agents) as (_, http):
        dep, waiting = await _pausing(http, 4)
        until = _paused_from_the_gate(waiting, 4)
        assert [d["state"] for d in waiting["devices"] if d["device"] == "r2"] == ["queued"]
        done = await view_when(http, dep, lambda v: v["state"] == "complete", "complete")
    _pushed_once_not_before(agents, until)
    assert done["pausing_until_ms"] is None  # no push waits any more


async def test_a_hub_restarted_during_the_pause_waits_it_out_without_shortening_or_pushing_again(
        tmp_path: Path) -> None:
    agents = fleet_agents(["r1", "r2"])
    async with hub_and_agents(tmp_path, agents) as (hub, http):
        dep, waiting = await _pausing(http, 10)
        hub.proc.kill()  # -9 during the pause: no shutdown, no flush
        hub.proc.wait(10)
    until = _paused_from_the_gate(waiting, 10)
    assert agents[1].pushes == []
    async with hub_and_agents(tmp_path, agents) as (hub, http):
        back_ms = time.time_ns() // 1_000_000
        assert back_ms < until, "the hub came back after the pause: nothing left to prove"
        done = await view_when(http, dep, lambda v: v["state"] == "complete", "complete", 90)
    _pushed_once_not_before(agents, until)
    push = _step(done, "wave:1:push")
    assert (push["index"], push["started_ms"], push["attempts"]) == (
        _step(waiting, "wave:1:push")["index"], _step(waiting, "wave:1:push")["started_ms"], 1)
