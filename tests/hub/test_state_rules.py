"""Everything about a transition lives in hub/states.py: retries, origins, self-loops, the states
the sync side watches — tested here alone (the tables themselves: test_states.py)."""
from __future__ import annotations

import pytest

from hub.errors import IllegalTransition, LocalProtocolError, PeerFault, RemoteProtocolError
from hub.states import (DEVICE_TRANSITIONS, ORIGIN, SHOWN_OFFLINE, WATCHED_FOR_SILENCE,
                        ContractEvent, ContractStatus, DeploymentEvent, DeviceEvent, DeviceState,
                        ExecutionEvent,
                        Origin, is_self_loop, next_state, refused, transition)


def test_every_event_of_every_machine_has_an_origin() -> None:
    for events in (DeviceEvent, ContractEvent, DeploymentEvent, ExecutionEvent):
        assert all(e in ORIGIN for e in events)


def test_a_step_is_written_only_when_the_state_changes() -> None:
    moved = next_state(DeviceState.UNKNOWN, DeviceEvent.BIRTH)
    loop = next_state(DeviceState.LIVE, DeviceEvent.TELEMETRY)
    assert (moved.before, moved.after, moved.written) == (
        DeviceState.UNKNOWN, DeviceState.RECONCILING, True)
    assert (loop.after, loop.written) == (DeviceState.LIVE, False)


def test_the_same_event_right_after_it_took_effect_is_a_retry_that_writes_nothing() -> None:
    last = ("complete", "completed")
    step = next_state(ContractStatus.COMPLETED, ContractEvent.COMPLETE, lambda: last)
    assert (step.after, step.written) == (ContractStatus.COMPLETED, False)
    with pytest.raises(IllegalTransition):  # another event, or the same one from elsewhere
        next_state(ContractStatus.COMPLETED, ContractEvent.START, lambda: last)
    with pytest.raises(IllegalTransition):
        next_state(ContractStatus.COMPLETED, ContractEvent.COMPLETE, lambda: ("fail", "failed"))
    with pytest.raises(IllegalTransition):  # the event that led elsewhere
        next_state(ContractStatus.FAILED, ContractEvent.COMPLETE, lambda: last)
    with pytest.raises(IllegalTransition):  # no history at all
        next_state(ContractStatus.COMPLETED, ContractEvent.COMPLETE)


def test_the_last_transition_is_read_only_for_an_event_the_table_refuses() -> None:
    asked: list[bool] = []
    next_state(DeviceState.LIVE, DeviceEvent.WILL, lambda: asked.append(True) or None)
    assert asked == []


def test_an_illegal_event_from_the_peer_is_remote_and_one_of_the_hubs_raises() -> None:
    peer = IllegalTransition("contract", ContractStatus.ACTIVE, ContractEvent.ACCEPT)
    err = refused(peer, "d1", "tank-fill@3")
    assert isinstance(err, RemoteProtocolError) and not isinstance(err, LocalProtocolError)
    assert (err.fault, err.device) == (PeerFault.OUT_OF_ORDER, "d1")
    assert err.detail.startswith("tank-fill@3: contract: event 'accept'")
    ours = IllegalTransition("device", DeviceState.UNKNOWN, DeviceEvent.RECONCILE_DONE)
    assert ORIGIN[DeviceEvent.RECONCILE_DONE] is Origin.HUB
    with pytest.raises(LocalProtocolError):
        refused(ours, "d1", "d1")


def test_telemetry_is_a_self_loop_exactly_where_the_sync_side_skips_it() -> None:
    skipped = {s for s in DeviceState if is_self_loop(s, DeviceEvent.TELEMETRY)}
    assert skipped == {DeviceState.LIVE, DeviceState.RECONCILING, DeviceState.RECONCILED,
                       DeviceState.FAULT}
    assert not is_self_loop(DeviceState.FAULT, DeviceEvent.RECONCILE_DONE)  # illegal: no loop


def test_silence_is_watched_where_silence_is_a_legal_way_offline() -> None:
    for state in WATCHED_FOR_SILENCE:
        assert transition(state, DeviceEvent.SILENCE) is DeviceState.PROJECTED
    assert not WATCHED_FOR_SILENCE & SHOWN_OFFLINE
    assert all((s, DeviceEvent.BIRTH) in DEVICE_TRANSITIONS for s in SHOWN_OFFLINE)
