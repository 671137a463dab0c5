"""What the API shows of a deployment (interface I4): its state, current step, waves with their
gates, devices with their evidence, the typed rollback reason, and (in full) every step and the
timeline of its state changes. A device has one row per contract the snapshot gives it
(`name`: the contract's name, `contract`: the version issued); the gate counts devices.

A 1,000-device view is ~0.5 MB of JSON and tens of milliseconds to build; a page or `ctl status
--wait` polls it every second or so. `ViewCache` keeps each view's encoded body until the
deployment is written again (hub/store/deployments.py `changes`), so a poll between two of the
engine's batches costs a dictionary lookup."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hub.rollout_gate import counts, failed_gate
from hub.store import HubStore
from hub.store.deployments import DeploymentRecord, ExecutionRecord, StepRecord


def step_view(s: StepRecord) -> dict[str, Any]:
    return {"index": s.index, "name": s.name, "status": s.status, "input": dict(s.input),
            "result": dict(s.result), "started_ms": s.started_ms, "finished_ms": s.finished_ms,
            "actor": s.actor, "attempts": s.attempts}


def _device(d: ExecutionRecord) -> dict[str, Any]:
    return {"device": d.device, "wave": d.wave, "state": d.state.value,
            "contract": d.issued, "name": d.contract, "known_good": dict(d.known_good) if d.known_good else None,
            "restored": d.restore, "reason": d.reason, "evidence": list(d.evidence),
            "rollback": dict(d.rollback) if d.rollback is not None else None}


def _gate(wave: Mapping[str, Any], devices: list[ExecutionRecord],
          steps: list[StepRecord]) -> dict[str, Any]:
    name = "canary:gate" if wave["kind"] == "canary" else f"wave:{wave['index']}:gate"
    step = next((s for s in reversed(steps) if s.name == name), None)
    status = str(step.result.get("gate", "pending")) if step is not None else "pending"
    failed = [{"device": d.device, "contract": d.contract, "gate": d.reason,
               "evidence": list(d.evidence)}
              for d in devices if failed_gate(d)]
    decided = step.result.get("counts") if step is not None else None  # as the gate saw them
    return {"status": status, "counts": dict(decided) if decided else counts(devices),
            "failed": failed}


def _pausing_until(step: StepRecord | None) -> int | None:
    """When a wave's push that waits out the strategy's pause_s may start (none without one).
    A time, not "still paused": the view is kept until the deployment changes, not the clock."""
    if step is None or step.status != "running" or not step.name.endswith(":push"):
        return None
    until = step.input.get("not_before_ms")
    return int(until) if until is not None and int(until) > step.started_ms else None


def deployment_view(store: HubStore, rec: DeploymentRecord, *, full: bool = True) -> dict[str, Any]:
    steps = store.deployments.steps(rec.id)
    devices = store.deployments.devices(rec.id)
    current = store.deployments.current_step(rec.id)
    by_wave: dict[int, list[ExecutionRecord]] = {}
    for d in devices:
        by_wave.setdefault(d.wave, []).append(d)
    out: dict[str, Any] = {
        "id": rec.id, "snapshot": rec.snapshot, "state": rec.state.value, "wave": rec.wave,
        "actor": rec.actor, "created_ms": rec.created_ms, "updated_ms": rec.updated_ms,
        "target": dict(rec.target), "strategy": dict(rec.strategy), "health": dict(rec.health),
        "resume_to": rec.resume_to.value if rec.resume_to else None,
        "step": None if current is None else {"index": current.index, "name": current.name,
                                              "status": current.status,
                                              "attempts": current.attempts},
        "waves": [{"index": w["index"], "kind": w["kind"], "devices": list(w["devices"]),
                   "gate": _gate(w, by_wave.get(w["index"], []), steps)} for w in rec.waves],
        "devices": [_device(d) for d in devices],
        "rollback": dict(rec.rollback) if rec.rollback is not None else None,
        "pausing_until_ms": _pausing_until(current),
    }
    if full:
        out["steps"] = [step_view(s) for s in steps]
        out["timeline"] = [{"from": t["from"], "to": t["to"], "event": t["event"],
                            "ts_ms": t["ts_ms"], "reason": t["reason"]}
                           for t in store.deployments.transitions(rec.id)]
    return out


class ViewCache:
    """Each deployment's encoded view (full, and without steps), kept until it changes."""

    def __init__(self, store: HubStore) -> None:
        self.store = store
        self._kept: dict[tuple[str, bool], tuple[int, bytes]] = {}

    def body(self, rec: DeploymentRecord, *, full: bool = True) -> bytes:
        """The view of `rec` as JSON bytes (as Starlette's JSONResponse encodes it)."""
        mark = self.store.deployments.changes(rec.id)
        kept = self._kept.get((rec.id, full))
        if kept is not None and kept[0] == mark:
            return kept[1]
        body = json.dumps(deployment_view(self.store, rec, full=full), ensure_ascii=False,
                          allow_nan=False, separators=(",", ":")).encode("utf-8")
        if not self.store.db.conn.in_transaction:  # what a transaction read may roll back
            self._kept[(rec.id, full)] = (mark, body)
        return body
