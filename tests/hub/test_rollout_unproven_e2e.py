"""A device whose health stays unproven fails its gate at the verify deadline (issue 13): a hub
process (embedded broker, API, rollout engine) and devices on MQTT. A declared gap in the
canary's journal inside its window, or a canary that journals nothing after it booted, would
leave the push pending for good; past the reach deadline, the window and the strategy's margin
the canary fails as `unproven` with what could not be proven, and the deployment rolls back
without expanding."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.hub.rollout_http import deploy, fleet_agents, hub_and_agents, tank_snapshot, view_when

pytestmark = pytest.mark.slow

BODY = {"health": {"window_s": 1}, "target": {"devices": ["r1", "r2"]},
        "strategy": {"canary": {"devices": ["r1"]}, "waves": {"size": 1},
                     "reach_deadline_s": 1, "verify_margin_s": 1}}


async def _canary_that(tmp_path: Path, does: str) -> tuple[dict[str, Any], Any, Any]:
    agents = fleet_agents(["r1", "r2"])
    setattr(agents[0], does, True)
    async with hub_and_agents(tmp_path, agents) as (_, http):
        dep = await deploy(http, await tank_snapshot(http), BODY)
        done = await view_when(http, dep, lambda v: v["state"] in ("rolled_back", "complete"),
                               "the deployment ended", 30)
    return done, agents[0], agents[1]


def _failed_canary(done: dict[str, Any]) -> list[dict[str, Any]]:
    assert done["state"] == "rolled_back"
    rollback = done["rollback"]
    assert (rollback["initiated_by"], rollback["gate"], rollback["devices"]) == (
        "gate", "unproven", ["r1"])
    gate = done["waves"][0]["gate"]
    assert gate["status"] == "failed" and gate["counts"]["failed"] == 1
    evidence: list[dict[str, Any]] = rollback["evidence"][0]["evidence"]
    assert [e["what"] for e in evidence][:2] == ["accepted", "boot"]
    assert evidence[-1]["what"] == "verify_deadline" and evidence[-1]["ts_ms"]
    return evidence


async def test_a_gap_in_the_canarys_journal_fails_it_unproven_with_the_gaps_seqs(
        tmp_path: Path) -> None:
    done, canary, other = await _canary_that(tmp_path, "loses")
    evidence = _failed_canary(done)
    gap = next(e for e in evidence if e["what"] == "journal_gap")
    assert canary.lost is not None and gap["value"] == list(canary.lost)
    assert gap["seq"] == canary.lost[0]  # the hub's gap row, at the first seq it never had
    assert other.pushes == []  # never expanded past the canary


async def test_a_canary_silent_after_it_booted_fails_unproven_no_entry_after_the_window(
        tmp_path: Path) -> None:
    done, canary, other = await _canary_that(tmp_path, "silent")
    evidence = _failed_canary(done)
    window = next(e for e in evidence if e["what"] == "window")
    assert window["value"] == "no entry at or after the window's end" and window["ts_ms"]
    assert not any(e["what"] == "journal_gap" for e in evidence)
    assert canary.pushes == ["tank-fill.r1@1"] and other.pushes == []
