"""The hub's state machines are tables: every row works, everything else raises, tables render."""
from __future__ import annotations

import enum
import itertools

import pytest

from hub.states import (
    CONTRACT_TRANSITIONS, DEPLOYMENT_TRANSITIONS, DEVICE_TRANSITIONS, EXECUTION_TRANSITIONS, MACHINES,
    ContractEvent, ContractStatus, DeploymentEvent, DeploymentState, DeviceEvent, DeviceState,
    ExecutionEvent, ExecutionState, IllegalTransition,
    render_table, transition,
)

_STATES_EVENTS = {
    "device": (DeviceState, DeviceEvent),
    "contract": (ContractStatus, ContractEvent),
    "deployment": (DeploymentState, DeploymentEvent),
    "execution": (ExecutionState, ExecutionEvent),
}
_LEGAL = [(m, s, e, t) for m, table in MACHINES.items() for (s, e), t in table.items()]
_ILLEGAL = [
    (m, s, e) for m, (states, events) in _STATES_EVENTS.items()
    for s, e in itertools.product(states, events) if (s, e) not in MACHINES[m]
]


@pytest.mark.parametrize(("machine", "state", "event", "target"), _LEGAL)
def test_every_table_row_is_a_legal_transition(machine: str, state: enum.StrEnum,
                                               event: enum.StrEnum, target: enum.StrEnum) -> None:
    assert transition(state, event) is target


@pytest.mark.parametrize(("machine", "state", "event"), _ILLEGAL)
def test_every_pair_outside_the_table_raises_illegal_transition(
        machine: str, state: enum.StrEnum, event: enum.StrEnum) -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(state, event)
    assert (info.value.machine, info.value.state, info.value.event) == (machine, state, event)


def test_illegal_transition_message_names_machine_state_and_event() -> None:
    with pytest.raises(IllegalTransition, match="contract: event 'start' is illegal in state 'completed'"):
        transition(ContractStatus.COMPLETED, ContractEvent.START)


def test_terminal_contract_statuses_have_no_way_out_but_the_devices_own_fallback() -> None:
    for status in ContractStatus:
        outgoing = [e for (s, e) in CONTRACT_TRANSITIONS if s is status
                    and e is not ContractEvent.REINSTATE]
        assert (outgoing == []) == status.terminal, status
    reinstated = {s for (s, e) in CONTRACT_TRANSITIONS if e is ContractEvent.REINSTATE}
    assert reinstated & {s for s in ContractStatus if s.terminal} == {ContractStatus.SUPERSEDED}


def test_every_non_terminal_state_is_reachable_from_the_initial_one() -> None:
    for table, start in ((DEVICE_TRANSITIONS, DeviceState.UNKNOWN),
                         (CONTRACT_TRANSITIONS, ContractStatus.SUBMITTED),
                         (DEPLOYMENT_TRANSITIONS, DeploymentState.PLANNED),
                         (EXECUTION_TRANSITIONS, ExecutionState.QUEUED)):
        seen, frontier = {start}, [start]
        while frontier:
            here = frontier.pop()
            for (s, _), t in table.items():
                if s is here and t not in seen:
                    seen.add(t)
                    frontier.append(t)
        assert seen == set(type(start)), f"unreachable: {set(type(start)) - seen}"


def test_a_faulted_device_leaves_fault_only_by_reset() -> None:
    exits = {e for (s, e), t in DEVICE_TRANSITIONS.items() if s is DeviceState.FAULT and t is not s}
    assert exits == {DeviceEvent.RESET}


def test_offline_then_back_walks_projected_reconciling_reconciled_live() -> None:
    state = DeviceState.LIVE
    walk = [DeviceEvent.WILL, DeviceEvent.BIRTH, DeviceEvent.JOURNAL_CAUGHT_UP,
            DeviceEvent.RECONCILE_DONE]
    seen = []
    for event in walk:
        state = transition(state, event)
        seen.append(state)
    assert seen == [DeviceState.PROJECTED, DeviceState.RECONCILING, DeviceState.RECONCILED,
                    DeviceState.LIVE]


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_render_table_lists_every_row_once(machine: str) -> None:
    text = render_table(machine)
    lines = text.splitlines()
    assert lines[0] == machine
    assert len(lines) == 1 + len(MACHINES[machine])
    for (s, e), t in MACHINES[machine].items():
        assert sum(1 for ln in lines[1:] if ln.split() == [s.value, e.value, "->", t.value]) == 1


def test_a_deployment_ends_only_complete_or_rolled_back_and_leaves_failed_only_by_retry() -> None:
    ends = {s for s in DeploymentState if not any(k[0] is s for k in DEPLOYMENT_TRANSITIONS)}
    assert ends == {DeploymentState.ROLLED_BACK}  # complete can still be rolled back on demand
    exits = {e for (s, e) in DEPLOYMENT_TRANSITIONS if s is DeploymentState.FAILED}
    assert exits == {DeploymentEvent.RETRY}


def test_a_paused_deployment_goes_on_where_its_resume_event_names() -> None:
    from hub.states import RESUME_EVENTS
    for state, event in RESUME_EVENTS.items():
        assert transition(DeploymentState.PAUSED, event) is state
