"""A deployment of several contracts per device: one execution row per (deployment, device,
contract) in a real store, the device counted once in its gate and the abort threshold, and the
rows that go back with a device's failed contract (hub/rollout_gate.py, hub/rollout_alone.py)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from contracts.rollout_strategy import Abort
from hub.rollout_alone import WAITING, origins, pending, siblings
from hub.rollout_gate import counts, decide, device_state
from hub.states import DeploymentState, ExecutionState
from hub.store import HubStore
from hub.store.deployments import DeploymentRecord, ExecutionRecord

_X = ExecutionState


def _row(device: str, contract: str, state: ExecutionState = _X.QUEUED, **more: Any
         ) -> ExecutionRecord:
    return ExecutionRecord(deployment="dep-000001", device=device, wave=1, state=state,
                           contract=f"{contract}.{device}", updated_ms=1, **more)


def test_each_contract_of_a_device_is_a_row_of_its_own_in_the_store(store: HubStore) -> None:
    store.db.execute("INSERT INTO snapshots (id, body, created_ms, actor, source) VALUES "
                     "('s1', x'00', 0, 't', '{}')")
    rec = DeploymentRecord(id="", snapshot="s1", target={}, strategy={}, health={},
                           state=DeploymentState.PLANNED,
                           waves=[{"index": 0, "kind": "canary", "devices": ["d1"]}],
                           actor="alice", created_ms=1, updated_ms=1)
    dep = store.deployments.create(rec, [_row("d1", "tank-fill"), _row("d1", "tank-aux")])
    rows = store.deployments.devices(dep.id)
    assert [r.contract for r in rows] == ["tank-aux.d1", "tank-fill.d1"]
    store.deployments.write(dep.id, 2, devices=[replace(rows[1], state=_X.PUSHED,
                                                        issued="tank-fill.d1@2")])
    again = HubStore(store.db).deployments.devices(dep.id)  # read back, not the kept rows
    assert [(r.contract, r.state, r.issued) for r in again] == [
        ("tank-aux.d1", _X.QUEUED, None), ("tank-fill.d1", _X.PUSHED, "tank-fill.d1@2")]
    assert store.deployments.devices(dep.id) == again  # the kept rows, updated in place


def test_a_device_counts_once_failed_if_any_of_its_contracts_failed() -> None:
    d1 = [_row("d1", "tank-fill", _X.HEALTHY), _row("d1", "tank-aux", _X.FAILED)]
    d2 = [_row("d2", "tank-fill", _X.HEALTHY), _row("d2", "tank-aux", _X.HEALTHY)]
    d3 = [_row("d3", "tank-fill", _X.HEALTHY), _row("d3", "tank-aux", _X.RUNNING)]
    d4 = [_row("d4", "tank-fill", _X.UNREACHABLE), _row("d4", "tank-aux", _X.HEALTHY)]
    assert [device_state(d) for d in (d1, d2, d3, d4)] == ["failed", "healthy", None,
                                                           "unreachable"]
    assert counts([*d1, *d2, *d3, *d4]) == {"healthy": 1, "failed": 1, "unreachable": 1,
                                            "skipped": 0}
    # 1 failed device of 2 executed is 50 %: under 60 %, over 40 % (rows would read 25 %).
    under = decide("wave", [*d1, *d2], [*d1, *d2], Abort(failure_pct=60, min_executed=1))
    assert (under.status, dict(under.counts)) == ("passed", {"healthy": 1, "failed": 1,
                                                             "unreachable": 0, "skipped": 0})
    over = decide("wave", [*d1, *d2], [*d1, *d2], Abort(failure_pct=40, min_executed=2))
    assert over.status == "failed" and [r.contract for r in over.failed] == ["tank-aux.d1"]


def test_a_failed_contract_takes_its_devices_other_contracts_back_with_it() -> None:
    failed = _row("d1", "tank-aux", _X.FAILED, reason="second_writer", issued="tank-aux.d1@2")
    sibling = _row("d1", "tank-fill", _X.HEALTHY, issued="tank-fill.d1@2")
    other = _row("d2", "tank-fill", _X.HEALTHY, issued="tank-fill.d2@2")
    assert siblings([sibling, failed, other]) == [sibling, failed]
    assert origins([sibling, failed, other]) == {"d1": failed}
    # Its failed contract restored already (a pass that stopped there): the sibling still goes.
    restored = replace(failed, state=_X.ROLLED_BACK, restore="tank-aux.d1@3",
                       rollback={"failed_contract": "tank-aux.d1", "result": "restored"})
    assert siblings([sibling, restored]) == [sibling]
    # A sibling given its reason while offline stays pending until restored.
    waiting = replace(sibling, rollback={"failed_contract": "tank-aux.d1", "result": WAITING})
    assert pending(waiting) and siblings([waiting, restored]) == [waiting]
    done = replace(waiting, state=_X.ROLLED_BACK, rollback={"failed_contract": "tank-aux.d1",
                                                            "result": "restored"})
    assert not pending(done) and siblings([done, restored]) == []
    # A device whose contracts all passed is left alone.
    assert siblings([sibling, other]) == []


def test_migration_0010_keeps_a_0009_databases_rows_under_the_new_key(tmp_path: Any) -> None:
    """A hub database from before 0010 (its rows keyed by (deployment, device)) opens with
    every row kept, and then holds a second contract of the same device."""
    import sqlite3
    path = tmp_path / "hub.db"
    with HubStore.open(path) as store:
        store.db.execute("INSERT INTO snapshots (id, body, created_ms, actor, source) VALUES "
                         "('s1', x'00', 0, 't', '{}')")
        rec = DeploymentRecord(id="", snapshot="s1", target={}, strategy={}, health={},
                               state=DeploymentState.PLANNED,
                               waves=[{"index": 0, "kind": "canary", "devices": ["d1"]}],
                               actor="alice", created_ms=1, updated_ms=1)
        dep = store.deployments.create(rec, [_row("d1", "tank-fill", issued="tank-fill.d1@2",
                                                  rollback={"result": WAITING})])
    with sqlite3.connect(path) as conn:  # back to 0009's table, its row in it
        conn.executescript(
            "CREATE TABLE old AS SELECT * FROM deployment_devices; DROP TABLE deployment_devices;"
            "CREATE TABLE deployment_devices (deployment TEXT NOT NULL, device TEXT NOT NULL, "
            "wave INTEGER NOT NULL, state TEXT NOT NULL, contract TEXT NOT NULL, issued TEXT, "
            "content_hash TEXT, pushed_ms INTEGER, known_good TEXT, restore TEXT, reason TEXT, "
            "evidence TEXT NOT NULL DEFAULT '[]', updated_ms INTEGER NOT NULL, rollback TEXT, "
            "PRIMARY KEY (deployment, device)); INSERT INTO deployment_devices SELECT * FROM old;"
            "DROP TABLE old; CREATE INDEX deployment_devices_device ON deployment_devices (device);"
            "DELETE FROM _sqlite_migrations WHERE name = '0010_device_contracts';")
    with HubStore.open(path) as store:
        kept = store.deployments.devices(dep.id)
        assert [(r.contract, r.issued, r.rollback) for r in kept] == [
            ("tank-fill.d1", "tank-fill.d1@2", {"result": WAITING})]
        store.deployments.write(dep.id, 2, devices=[_row("d1", "tank-aux")])
        assert [r.contract for r in HubStore(store.db).deployments.devices(dep.id)] == [
            "tank-aux.d1", "tank-fill.d1"]
