"""The rules over the tables (hub/states/tables.py): a transition, a retry, whose fault an
illegal event is, self-loops, and rendering — pure.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from hub.errors import IllegalTransition, PeerFault, RemoteProtocolError
from hub.states.tables import (CONTRACT_TRANSITIONS, DEPLOYMENT_TRANSITIONS, DEVICE_TRANSITIONS,
                               EXECUTION_TRANSITIONS, ContractEvent, ContractStatus,
                               DeploymentEvent, DeploymentState, DeviceEvent, DeviceState,
                               ExecutionEvent, ExecutionState)

_E, _CE = DeviceEvent, ContractEvent

S = TypeVar("S", DeviceState, ContractStatus, DeploymentState, ExecutionState)

MACHINES: Mapping[str, Mapping[tuple[Any, Any], Any]] = MappingProxyType({
    "device": DEVICE_TRANSITIONS,
    "contract": CONTRACT_TRANSITIONS,
    "deployment": DEPLOYMENT_TRANSITIONS,
    "execution": EXECUTION_TRANSITIONS,
})
"""Every machine by name; the name is what IllegalTransition and rendered docs call it."""

_MACHINE_OF: Mapping[type[enum.StrEnum], str] = MappingProxyType({
    DeviceState: "device", ContractStatus: "contract", DeploymentState: "deployment",
    ExecutionState: "execution",
})


def transition(state: S, event: enum.StrEnum) -> S:
    """The state after `event` in `state`, from the table of `state`'s machine.

    Raises IllegalTransition if that table has no `(state, event)` row."""
    machine = _MACHINE_OF[type(state)]
    try:
        return MACHINES[machine][(state, event)]  # type: ignore[no-any-return]
    except KeyError:
        raise IllegalTransition(machine, state, event) from None


def render_table(machine: str) -> str:
    """The named machine as aligned text, one `state  event  ->  state` row per transition, in
    table order (deterministic: the tables are insertion-ordered literals). Raises KeyError for an
    unknown machine name."""
    rows = [(s.value, e.value, t.value) for (s, e), t in MACHINES[machine].items()]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"  {s:<{w0}}  {e:<{w1}}  ->  {t}" for s, e, t in rows]
    return f"{machine}\n" + "\n".join(lines) + "\n"


class Origin(enum.StrEnum):
    PEER = "peer"  # a device's message (or the broker's last will on its behalf)
    HUB = "hub"    # the hub's own decision: a timer, a restart, an operator, the planner


ORIGIN: Mapping[enum.StrEnum, Origin] = MappingProxyType({
    # The rollout's events first: StrEnum members hash by their value, and "start", "accept" and
    # "fail" are also contract events, whose (peer) origin must win. Every rollout event is the
    # hub's own (its reading of a device's journal included); `refused` is never asked about one.
    **{e: Origin.HUB for e in DeploymentEvent},
    **{e: Origin.HUB for e in ExecutionEvent},
    **{e: Origin.PEER for e in (_E.BIRTH, _E.TELEMETRY, _E.WILL, _E.CHAIN_BROKEN)},
    **{e: Origin.HUB for e in (_E.SILENCE, _E.JOURNAL_CAUGHT_UP, _E.RECONCILE_DONE, _E.RESET,
                               _E.HUB_RESTART, _E.JOURNAL_STALLED)},
    **{e: Origin.PEER for e in (_CE.ACCEPT, _CE.REFUSE, _CE.START, _CE.TRIP, _CE.RESUME,
                                _CE.COMPLETE, _CE.FAIL, _CE.REINSTATE)},
    **{e: Origin.HUB for e in (_CE.PUSH, _CE.HOLD, _CE.ABORT, _CE.SUPERSEDE, _CE.EXPIRE)},
})
"""Who triggers each event of every machine: decides whose fault an illegal one is (`refused`)."""


def is_self_loop(state: S, event: enum.StrEnum) -> bool:
    """Whether `event` is legal in `state` and leaves it there. The sync side skips such an event
    when it is frequent (TELEMETRY every second from every device): the store would write no
    history row, but each applied event is still a durable (fsync'd) transaction."""
    try:
        return transition(state, event) is state
    except IllegalTransition:
        return False


@dataclass(frozen=True, kw_only=True)
class Step(Generic[S]):
    """The outcome of one event: the state before and after, and whether it must be written (a
    self-loop or a retried event writes nothing)."""

    before: S
    after: S

    @property
    def written(self) -> bool:
        return self.after is not self.before


def next_state(current: S, event: enum.StrEnum,
               last: Callable[[], tuple[str, str] | None] = lambda: None) -> Step[S]:
    """The step `event` takes from `current`. `last()` gives the `(event, to)` of the last
    transition persisted for this subject (asked only for an event the table refuses): the same
    event repeated right after it took effect is a retry, a no-op (Step with written False), so
    callers may retry after a crash.

    Raises IllegalTransition for any other event that the table does not allow."""
    try:
        return Step(before=current, after=transition(current, event))
    except IllegalTransition:
        if last() == (event.value, current.value):
            return Step(before=current, after=current)
        raise


def refused(exc: IllegalTransition, device: str, subject: str) -> RemoteProtocolError:
    """The RemoteProtocolError for an illegal event that a peer (`device`) triggered on `subject`
    (a device or contract id): its message came out of order. An illegal event the hub triggered
    itself is a bug: `exc` is raised again."""
    if ORIGIN.get(exc.event) is not Origin.PEER:
        raise exc
    return RemoteProtocolError(PeerFault.OUT_OF_ORDER, device, f"{subject}: {exc}")
