"""Deployment views as the hub's API gives them (fixed interface I4), for the tests of what the
client and the operator page show of them: one rolled back by its canary's telemetry gate, one
complete over a canary and a wave, and one waiting at a manual approval."""
from __future__ import annotations

import copy
from typing import Any

T0 = 1_795_500_000_000  # 2026-11-24T06:00:00Z, the hub tests' START_MS
SNAPSHOT_BAD = "badc0ffee" + "0" * 55
SNAPSHOT_GOOD = "900dfeed" + "1" * 56
STRATEGY = {"canary": {"devices": ["pump-station-7"]}, "waves": {"size": 10},
            "approval": "auto", "pause_s": 0, "reach_deadline_s": 60,
            "abort": {"failure_pct": 10, "min_executed": 1}}
HEALTH = {"window_s": 30, "min_cycles": 10, "step": None,
          "telemetry": "level >= 1 and level <= 5", "commissioning": False}
EVIDENCE = [{"what": "level", "seq": 41, "ts_ms": T0 + 12_000, "value": 5.62},
            {"what": "telemetry", "seq": None, "ts_ms": None,
             "value": "level >= 1 and level <= 5"}]


def _device(device: str, wave: int, state: str, contract: str, **more: Any) -> dict[str, Any]:
    return {"device": device, "wave": wave, "state": state, "contract": contract,
            "known_good": {"contract": "tank-fill@2", "hash": "ab" * 32}, "reason": None,
            "evidence": [], **more}


def _step(index: int, name: str, status: str = "done", **more: Any) -> dict[str, Any]:
    return {"index": index, "name": name, "status": status, "input": {}, "result": {},
            "started_ms": T0 + 1000 * index, "finished_ms": T0 + 1000 * index + 500,
            "actor": "deployment:dep-000001", "attempts": 1, **more}


def rolled_back() -> dict[str, Any]:
    """A bad setpoint on the canary: its telemetry gate failed, the rollback put it back on its
    known-good contract; the wave never got the snapshot (its devices skipped)."""
    return copy.deepcopy({
        "id": "dep-000001", "snapshot": SNAPSHOT_BAD, "state": "rolled_back", "wave": 0,
        "actor": "operator-user", "created_ms": T0, "updated_ms": T0 + 20_000,
        "strategy": STRATEGY, "health": HEALTH,
        "step": {"index": 3, "name": "rollback", "status": "done", "attempts": 1},
        "waves": [
            {"index": 0, "kind": "canary", "devices": ["pump-station-7"], "gate": {
                "status": "failed",
                "counts": {"healthy": 0, "failed": 1, "unreachable": 0, "skipped": 0},
                "failed": [{"device": "pump-station-7", "gate": "telemetry",
                            "evidence": EVIDENCE}]}},
            {"index": 1, "kind": "wave", "devices": ["booster-skid-2", "well-9"], "gate": {
                "status": "pending",
                "counts": {"healthy": 0, "failed": 0, "unreachable": 0, "skipped": 2},
                "failed": []}}],
        "devices": [
            _device("pump-station-7", 0, "rolled_back", "tank-fill@3", reason="telemetry",
                    evidence=EVIDENCE, restored="tank-fill@4"),
            _device("booster-skid-2", 1, "skipped", "tank-fill@3"),
            _device("well-9", 1, "skipped", "tank-fill@3")],
        "rollback": {"initiated_by": "gate", "gate": "telemetry", "devices": ["pump-station-7"],
                     "evidence": [{"device": "pump-station-7", "gate": "telemetry",
                                   "evidence": EVIDENCE}],  # per failed device, as the engine
                     "ts_ms": T0 + 15_000, "snapshot": SNAPSHOT_BAD},
        "steps": [_step(0, "canary:push"), _step(1, "canary:gate", "failed"),
                  _step(2, "rollback:push"), _step(3, "rollback")],
        "timeline": [
            {"from": None, "to": "planned", "event": "create", "ts_ms": T0, "reason": None},
            {"from": "planned", "to": "canary", "event": "start", "ts_ms": T0 + 1000,
             "reason": "canary:push"},
            {"from": "canary", "to": "rolling_back", "event": "gate_failed", "ts_ms": T0 + 15_000,
             "reason": "gate telemetry failed on pump-station-7"},
            {"from": "rolling_back", "to": "rolled_back", "event": "rolled_back",
             "ts_ms": T0 + 20_000, "reason": "rollback"}]})


def complete() -> dict[str, Any]:
    """A good snapshot over the canary and one wave: every device healthy."""
    devices = [_device("pump-station-7", 0, "healthy", "tank-fill@4"),
               _device("booster-skid-2", 1, "healthy", "tank-fill@4"),
               _device("well-9", 1, "unreachable", "tank-fill@4",
                       reason="not accepted within the reach deadline (60 s)")]
    return copy.deepcopy({
        "id": "dep-000002", "snapshot": SNAPSHOT_GOOD, "state": "complete", "wave": 1,
        "actor": "operator-user", "created_ms": T0 + 30_000, "updated_ms": T0 + 90_000,
        "strategy": STRATEGY, "health": HEALTH,
        "step": {"index": 5, "name": "complete", "status": "done", "attempts": 1},
        "waves": [
            {"index": 0, "kind": "canary", "devices": ["pump-station-7"], "gate": {
                "status": "passed",
                "counts": {"healthy": 1, "failed": 0, "unreachable": 0, "skipped": 0},
                "failed": []}},
            {"index": 1, "kind": "wave", "devices": ["booster-skid-2", "well-9"], "gate": {
                "status": "passed",
                "counts": {"healthy": 1, "failed": 0, "unreachable": 1, "skipped": 0},
                "failed": []}}],
        "devices": devices, "rollback": None,
        "steps": [_step(i, n) for i, n in enumerate(
            ("canary:push", "canary:gate", "wave:1:push", "wave:1:gate", "verify", "complete"))]})


def paused() -> dict[str, Any]:
    """A manual-approval deployment whose canary passed: it waits for an operator."""
    view = complete()
    view.update(id="dep-000003", state="paused", wave=0, rollback=None,
                step={"index": 2, "name": "canary:approval", "status": "running", "attempts": 1},
                strategy={**STRATEGY, "approval": "manual"})
    view["waves"][1]["gate"] = {"status": "pending", "failed": [], "counts": {
        "healthy": 0, "failed": 0, "unreachable": 0, "skipped": 0}}
    for d in view["devices"][1:]:
        d.update(state="queued", reason=None)
    return view


def summary(view: dict[str, Any]) -> dict[str, Any]:
    """A view as GET /api/deployments lists it: without its steps."""
    return {k: v for k, v in view.items() if k != "steps"}


WRITER = [{"what": "second_writer", "seq": 57, "ts_ms": T0 + 70_000,
           "value": {"point": "pump_speed", "value": 500}}]


def went_on() -> dict[str, Any]:
    """A deployment that goes on past a device rolled back alone: booster-skid-2 failed its gate
    under the abort threshold and is back on its known-good (restored as tank-fill@5); wave 2
    waits out the strategy's pause_s."""
    view = complete()
    view.update(id="dep-000004", state="wave", wave=2, created_ms=T0 + 60_000,
                strategy={**STRATEGY, "waves": {"size": 1}, "pause_s": 30,
                          "abort": {"failure_pct": 60, "min_executed": 1}},
                step={"index": 4, "name": "wave:2:push", "status": "running", "attempts": 1},
                pausing_until_ms=T0 + 120_000)
    view["waves"] = [view["waves"][0], {
        "index": 1, "kind": "wave", "devices": ["booster-skid-2"], "gate": {
            "status": "passed", "counts": {"healthy": 0, "failed": 1, "unreachable": 0,
                                           "skipped": 0},
            "failed": [{"device": "booster-skid-2", "gate": "second_writer",
                        "evidence": WRITER}]}},
        {"index": 2, "kind": "wave", "devices": ["well-9"], "gate": {
            "status": "pending", "counts": {"healthy": 0, "failed": 0, "unreachable": 0,
                                            "skipped": 0}, "failed": []}}]
    view["devices"] = [
        _device("pump-station-7", 0, "healthy", "tank-fill@4"),
        _device("booster-skid-2", 1, "rolled_back", "tank-fill@4", reason="second_writer",
                evidence=WRITER, restored="tank-fill@5", rollback={
                    "initiated_by": "gate", "scope": "device", "gate": "second_writer",
                    "device": "booster-skid-2", "devices": ["booster-skid-2"],
                    "evidence": [{"device": "booster-skid-2", "gate": "second_writer",
                                  "evidence": WRITER}],
                    "ts_ms": T0 + 75_000, "snapshot": SNAPSHOT_GOOD, "step": "wave:1:gate",
                    "result": "restored", "restored": "tank-fill@5"}),
        _device("well-9", 2, "queued", "tank-fill@4")]
    return copy.deepcopy(view)
