"""The hub's state machines, as tables (DESIGN invariant 7, STYLE 2): everything about a
transition lives in this package — the tables (tables.py) and the rules over them (rules.py).

Theory of operation:
- Each machine is one mapping `(state, event) -> state`. Anything not in a table is illegal and
  `transition()` raises `IllegalTransition`; there are no hidden `if`s elsewhere.
- Self-loops (e.g. TELEMETRY while LIVE) are listed explicitly: they are legal, change nothing, and
  the store records no history row for them, so a flood of telemetry costs no writes.
- After a failure a machine sits in an explicit FAULT (device), FAILED (deployment) or terminal status
  (contract): FAILED, REFUSED, ... A FAULTed device leaves only by an operator RESET.
- The tables are pure data; persistence (one transaction per change, with its history row) is the
  store's job, so a restarted hub resumes from the last persisted state.
- A retry is a no-op: the same event again, right after it produced the current state, is illegal
  from that state but changes nothing (`next_state`), so callers may retry after a crash.
- Every event has an origin (`ORIGIN`): the PEER's (a device's message, or the broker's will on
  its behalf) or the HUB's own decision (a timer, a restart, an operator). An illegal event of the
  peer's is a RemoteProtocolError (logged, counted, the hub carries on); of the hub's, a bug: the
  IllegalTransition (a LocalProtocolError) raises (`refused`; hub/errors.py).
- What the sync side asks of a device's state lives here too: which states are watched for
  silence (`WATCHED_FOR_SILENCE`), which ones mean "offline" (`SHOWN_OFFLINE`), and which events
  are self-loops not worth a durable transaction (`is_self_loop`).
"""
from hub.errors import IllegalTransition
from hub.states.rules import (MACHINES, ORIGIN, Origin, Step, is_self_loop, next_state, refused,
                              render_table, transition)
from hub.states.rollout import RESUME_EVENTS
from hub.states.tables import (CONTRACT_TRANSITIONS, DEPLOYMENT_TRANSITIONS, DEVICE_TRANSITIONS,
                               EXECUTION_TRANSITIONS, SHOWN_OFFLINE, WATCHED_FOR_SILENCE,
                               ContractEvent, ContractStatus, DeploymentEvent, DeploymentState,
                               DeviceEvent, DeviceState, ExecutionEvent, ExecutionState)

__all__ = [
    "CONTRACT_TRANSITIONS", "DEPLOYMENT_TRANSITIONS", "DEVICE_TRANSITIONS", "EXECUTION_TRANSITIONS",
    "MACHINES", "ORIGIN", "RESUME_EVENTS", "SHOWN_OFFLINE", "WATCHED_FOR_SILENCE", "ContractEvent", "ContractStatus", "DeploymentEvent",
    "DeploymentState", "DeviceEvent", "DeviceState", "ExecutionEvent", "ExecutionState",
    "IllegalTransition", "Origin", "Step",
    "is_self_loop", "next_state", "refused", "render_table", "transition",
]
