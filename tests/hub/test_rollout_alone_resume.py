"""A device rolled back alone on all its contracts, the hub dying between two of its restores
(hub/rollout_alone.py): every reason is on record before the first restore, so the next pass
(here hub/rollout_converge.py, for a device pushed on its return) finds the contract not yet
restored pending and restores it. Real store and engine; the crash is the one fault put in: a
restore that never returns (the process gone), so nothing after it is committed.

Before the fix, the sibling's reason was only written when its own turn came: after the crash
its row was `healthy` with no reason, and converge judged it and left it on the failed snapshot
while its device's other contract went back."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from hub.fleet import Fleet
from hub.registry import DeviceRegistry
from hub.rollout_alone import WAITING, pending
from hub.rollout_engine import RolloutEngine
from hub.rollout_steps import Commit
from hub.service import HubService
from hub.states import DeploymentState, ExecutionState
from hub.store import HubStore
from hub.store.deployments import DeploymentRecord, ExecutionRecord

_X = ExecutionState


class _HubDied(Exception):
    """The hub process gone mid-pass: what was not committed is lost."""


def _deployment(store: HubStore) -> DeploymentRecord:
    """Complete; d1 pushed on its return with two contracts: tank-fill failed, tank-aux healthy."""
    store.db.execute("INSERT INTO snapshots (id, body, created_ms, actor, source) VALUES "
                     "('s1', x'00', 0, 't', '{}')")
    rec = DeploymentRecord(id="", snapshot="s1", target={}, strategy={"reach_deadline_s": 5},
                           health={}, state=DeploymentState.COMPLETE,
                           waves=[{"index": 0, "kind": "canary", "devices": ["d1"]}],
                           actor="alice", created_ms=1, updated_ms=1)
    rows = [ExecutionRecord(deployment="", device="d1", wave=0, state=_X.FAILED,
                            contract="tank-fill.d1", updated_ms=1, issued="tank-fill.d1@2",
                            reason="second_writer"),
            ExecutionRecord(deployment="", device="d1", wave=0, state=_X.HEALTHY,
                            contract="tank-aux.d1", updated_ms=1, issued="tank-aux.d1@2")]
    return store.deployments.create(rec, rows)


async def test_a_restore_cut_short_by_a_crash_leaves_its_siblings_pending_and_the_next_pass_restores_them(
        store: HubStore, service: HubService, registry: DeviceRegistry, clock: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = RolloutEngine(store, service, Fleet(store, registry, clock), {}, clock)
    dep = _deployment(store)
    restored: list[str] = []
    dies_after = [1]

    async def restore(d: DeploymentRecord, ex: ExecutionRecord, commit: Commit) -> ExecutionRecord:
        if len(restored) == dies_after[0]:
            raise _HubDied
        after = replace(ex, state=_X.ROLLED_BACK, restore=f"{ex.contract}@3")
        commit([after], {}, durable=True)  # as the real one: reserved, then published
        restored.append(ex.contract)
        return after

    monkeypatch.setattr(engine.devices, "online", lambda device: True)
    monkeypatch.setattr(engine.devices, "restore", restore)
    failed = next(ex for ex in store.deployments.devices(dep.id) if ex.state is _X.FAILED)
    with pytest.raises(_HubDied):
        await engine.returns._converge_one(dep, failed, True)
    rows = {ex.contract: ex for ex in store.deployments.devices(dep.id)}
    assert restored == ["tank-fill.d1"] and rows["tank-fill.d1"].state is _X.ROLLED_BACK
    aux = rows["tank-aux.d1"]
    assert aux.rollback is not None and aux.rollback["result"] == WAITING, aux
    assert aux.rollback["failed_contract"] == "tank-fill.d1" and pending(aux)

    dies_after[0] = 99  # the hub back: the next pass
    dep = store.deployments.get(dep.id)
    assert dep is not None
    await engine.returns.converge(dep)
    rows = {ex.contract: ex for ex in store.deployments.devices(dep.id)}
    assert restored == ["tank-fill.d1", "tank-aux.d1"]  # each restored once
    aux = rows["tank-aux.d1"]
    assert aux.state is _X.ROLLED_BACK and aux.restore == "tank-aux.d1@3"
    assert aux.rollback is not None and aux.rollback["result"] == "restored"
