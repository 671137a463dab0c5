"""store.deployments: one transaction per unit of work (the step, the devices, the transition), a
repeated event a no-op, and the finished deployments the engine no longer reads."""
from __future__ import annotations

from dataclasses import replace

import pytest

from hub.states import DeploymentEvent, DeploymentState, ExecutionState, IllegalTransition
from hub.store import HubStore
from hub.store.deployments import DeploymentRecord, ExecutionRecord, StepRecord

_D, _X = DeploymentState, ExecutionState


def _deployment(store: HubStore) -> DeploymentRecord:
    store.db.execute("INSERT INTO snapshots (id, body, created_ms, actor, source) VALUES "
                     "('s1', x'00', 0, 't', '{}')")
    rec = DeploymentRecord(id="", snapshot="s1", target={}, strategy={}, health={},
                           state=_D.PLANNED, waves=[{"index": 0, "kind": "canary",
                                                     "devices": ["d1", "d2"]}],
                           actor="alice", created_ms=1, updated_ms=1)
    devices = [ExecutionRecord(deployment="", device=d, wave=0, state=_X.QUEUED,
                               contract=f"tank-fill.{d}", updated_ms=1) for d in ("d1", "d2")]
    return store.deployments.create(rec, devices)


def _step(dep: str, status: str = "running") -> StepRecord:
    return StepRecord(deployment=dep, index=0, name="canary:push", status=status,
                      input={"wave": 0}, result={}, started_ms=2, actor="hub")


def test_ids_are_numbered_and_creation_is_recorded_in_the_timeline(store: HubStore) -> None:
    first = _deployment(store)
    assert first.id == "dep-000001"
    assert [(t["from"], t["to"], t["event"]) for t in store.deployments.transitions(first.id)] == [
        (None, "planned", "create")]
    assert [d.state for d in store.deployments.devices(first.id)] == [_X.QUEUED, _X.QUEUED]


def test_a_unit_of_work_that_fails_writes_nothing_of_it(store: HubStore) -> None:
    dep = _deployment(store)
    pushed = replace(store.deployments.devices(dep.id)[0], state=_X.PUSHED, issued="tank-fill.d1@1")
    with pytest.raises(IllegalTransition):  # planned cannot pass a gate
        store.deployments.write(dep.id, 3, event=DeploymentEvent.GATE_PASSED, step=_step(dep.id),
                                devices=[pushed])
    assert store.deployments.steps(dep.id) == []
    assert store.deployments.devices(dep.id)[0].state is _X.QUEUED
    assert store.deployments.get(dep.id).state is _D.PLANNED
    after = store.deployments.write(dep.id, 3, event=DeploymentEvent.START, step=_step(dep.id),
                                    devices=[pushed])
    assert after.state is _D.CANARY and store.deployments.current_step(dep.id) == _step(dep.id)
    assert store.deployments.devices(dep.id)[0].issued == "tank-fill.d1@1"
    again = store.deployments.write(dep.id, 4, event=DeploymentEvent.START)  # a retry: no-op
    assert again.state is _D.CANARY
    assert [t["event"] for t in store.deployments.transitions(dep.id)] == ["create", "start"]


def test_a_finished_deployment_is_read_for_convergence_only_while_a_device_needs_it(
        store: HubStore) -> None:
    dep = _deployment(store)
    rows = store.deployments.devices(dep.id)
    store.deployments.write(dep.id, 3, event=DeploymentEvent.START)
    store.deployments.write(dep.id, 3, event=DeploymentEvent.LAST_GATE_PASSED, devices=[
        replace(rows[0], state=_X.HEALTHY), replace(rows[1], state=_X.UNREACHABLE)])
    store.deployments.write(dep.id, 3, event=DeploymentEvent.VERIFIED)
    assert [d.id for d in store.deployments.converging([_D.COMPLETE])] == [dep.id]
    store.deployments.write(dep.id, 4, devices=[replace(rows[1], state=_X.HEALTHY)])
    assert store.deployments.converging([_D.COMPLETE]) == []


def test_the_devices_kept_between_writes_are_what_the_store_holds_even_after_a_rollback(
        store: HubStore) -> None:
    dep = _deployment(store)
    fresh = HubStore(store.db)  # a repository with nothing kept: what the store holds
    d1, d2 = store.deployments.devices(dep.id)
    store.deployments.write(dep.id, 3, event=DeploymentEvent.START, step=_step(dep.id),
                            devices=[replace(d1, state=_X.PUSHED, issued="tank-fill.d1@1")])
    assert store.deployments.devices(dep.id) == fresh.deployments.devices(dep.id)
    assert store.deployments.devices(dep.id)[0].state is _X.PUSHED
    with pytest.raises(RuntimeError), store.tx():  # an outer unit of work that fails
        store.deployments.write(dep.id, 4, devices=[replace(d2, state=_X.PUSHED)])
        assert store.deployments.devices(dep.id)[1].state is _X.PUSHED  # read inside it
        raise RuntimeError("rolled back")
    assert store.deployments.devices(dep.id)[1].state is _X.QUEUED
    assert store.deployments.devices(dep.id) == fresh.deployments.devices(dep.id)
