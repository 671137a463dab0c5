"""A device rolled back alone (hub/rollout_alone.py): its reason kept on its row, what counts as
latched (never pushed over), and when it is still pending — over a real store."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from hub.rollout_alone import WAITING, pending, resolved
from hub.rollout_steps import DeviceSteps
from hub.states import ExecutionState
from hub.store import HubStore
from hub.store.deployments import ExecutionRecord
from tests.hub.test_deployments_store import _deployment

_X = ExecutionState
WHY: dict[str, Any] = {"initiated_by": "gate", "scope": "device", "gate": "second_writer",
                       "device": "d2", "result": WAITING, "restored": None}


def _failed(reason: str, **more: Any) -> ExecutionRecord:
    return ExecutionRecord(deployment="dep-000001", device="d2", wave=1, state=_X.FAILED,
                           contract="tank-fill.d2", updated_ms=5, issued="tank-fill.d2@2",
                           content_hash="ab" * 32, reason=reason, **more)


def test_its_reason_is_kept_on_its_row_and_read_back(store: HubStore) -> None:
    dep = _deployment(store)
    row = replace(store.deployments.devices(dep.id)[1], state=_X.FAILED, rollback=WHY)
    store.deployments.write(dep.id, 6, devices=[row])
    assert HubStore(store.db).deployments.devices(dep.id)[1].rollback == WHY


def test_a_trip_in_its_own_journal_latches_it_before_the_hub_marks_the_contract_tripped(
        store: HubStore) -> None:
    steps = DeviceSteps(store, None, None, {}, lambda: 0)  # type: ignore[arg-type]
    # The contract is not even in the store: the gate's verdict on the journal is enough.
    assert steps.latched(_failed("guard_trip")) and steps.latched(_failed("safe_unconfirmed"))
    assert not steps.latched(_failed("second_writer")) and not steps.latched(_failed("unproven"))
    assert steps.latched(_failed("latched: guard_trip"))


def test_pending_until_restored_or_latched_and_resolved_once_back() -> None:
    assert pending(_failed("second_writer"))  # no reason yet
    assert pending(_failed("second_writer", rollback=WHY))  # offline: waiting
    assert not pending(_failed("latched: guard_trip"))
    assert not pending(_failed("second_writer", rollback={**WHY, "result": "restored"}))
    back = replace(_failed("second_writer"), state=_X.ROLLED_BACK, restore="tank-fill.d2@3")
    done = resolved(_failed("second_writer", rollback=WHY), back)
    assert done.rollback is not None
    assert (done.rollback["result"], done.rollback["restored"]) == ("restored", "tank-fill.d2@3")
    assert resolved(_failed("second_writer"), back) is back  # nothing of its own to resolve
