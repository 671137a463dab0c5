"""The hub's state machines as data: states, events, and one `(state, event) -> state`
table each (DESIGN invariant 7, STYLE 2); the rollout's two (deployment, per-device execution)
are in hub/states/rollout.py and re-exported here. The rules over them are hub/states/rules.py's; the
theory of operation is hub/states/__init__.py's.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from hub.states.rollout import (DEPLOYMENT_TRANSITIONS, EXECUTION_TRANSITIONS, DeploymentEvent,
                                DeploymentState, ExecutionEvent, ExecutionState)


class DeviceState(enum.StrEnum):
    UNKNOWN = "unknown"          # never heard from since the store was created (or after RESET)
    LIVE = "live"                # status + telemetry flowing; hub shows actual values
    PROJECTED = "projected"      # LWT or silence: the engine runs forward on the contract's `expect`
    RECONCILING = "reconciling"  # device back; its journal is being ingested from the acked seq
    RECONCILED = "reconciled"    # journal caught up; actual replaced projection; divergence measured
    FAULT = "fault"              # journal hash chain broken: nothing from the device is trusted


class DeviceEvent(enum.StrEnum):
    BIRTH = "birth"                          # retained status message with a boot id
    TELEMETRY = "telemetry"
    WILL = "will"                            # LWT "offline" published by the broker
    SILENCE = "silence"                      # no message within the configured silence timeout
    JOURNAL_CAUGHT_UP = "journal_caught_up"  # contiguous journal reaches the device's last_seq
    RECONCILE_DONE = "reconcile_done"        # divergence measured, replan decided
    CHAIN_BROKEN = "chain_broken"            # an entry's prev_hash does not match
    RESET = "reset"                          # operator clears a fault
    HUB_RESTART = "hub_restart"              # this hub process started: what it knew may be stale
    JOURNAL_STALLED = "journal_stalled"      # telemetry flows but the journal stopped catching up


_D, _E = DeviceState, DeviceEvent
# A tuple, not a set: table order must not depend on string hashing (it is rendered in docs).
_OFFLINE = ((_E.WILL, _D.PROJECTED), (_E.SILENCE, _D.PROJECTED), (_E.CHAIN_BROKEN, _D.FAULT))

# After a hub restart nothing the hub holds is fresh: a device it showed live (or was catching up)
# must speak again and be caught up before it is live (interface 7). Offline states stay put.
_RESTART = ((_D.LIVE, _D.RECONCILING), (_D.RECONCILING, _D.RECONCILING),
            (_D.RECONCILED, _D.RECONCILING), (_D.PROJECTED, _D.PROJECTED),
            (_D.UNKNOWN, _D.UNKNOWN), (_D.FAULT, _D.FAULT))

DEVICE_TRANSITIONS: Mapping[tuple[DeviceState, DeviceEvent], DeviceState] = MappingProxyType({
    **{(s, _E.HUB_RESTART): t for s, t in _RESTART},
    (_D.LIVE, _E.JOURNAL_STALLED): _D.RECONCILING,  # a trip in the missing journal is unseen
    (_D.UNKNOWN, _E.BIRTH): _D.RECONCILING,
    (_D.UNKNOWN, _E.TELEMETRY): _D.LIVE,
    (_D.UNKNOWN, _E.WILL): _D.PROJECTED,  # hub restarted while the device is offline (retained LWT)
    (_D.LIVE, _E.TELEMETRY): _D.LIVE,
    (_D.LIVE, _E.JOURNAL_CAUGHT_UP): _D.LIVE,
    (_D.LIVE, _E.BIRTH): _D.RECONCILING,  # rebooted: catch up what it journaled meanwhile
    **{(_D.LIVE, e): s for e, s in _OFFLINE},
    (_D.PROJECTED, _E.BIRTH): _D.RECONCILING,
    (_D.PROJECTED, _E.TELEMETRY): _D.RECONCILING,  # the silence was ours: still catch up
    **{(_D.PROJECTED, e): s for e, s in _OFFLINE},
    (_D.RECONCILING, _E.BIRTH): _D.RECONCILING,
    (_D.RECONCILING, _E.TELEMETRY): _D.RECONCILING,
    (_D.RECONCILING, _E.JOURNAL_CAUGHT_UP): _D.RECONCILED,
    **{(_D.RECONCILING, e): s for e, s in _OFFLINE},
    (_D.RECONCILED, _E.TELEMETRY): _D.RECONCILED,
    (_D.RECONCILED, _E.JOURNAL_CAUGHT_UP): _D.RECONCILED,
    (_D.RECONCILED, _E.RECONCILE_DONE): _D.LIVE,
    (_D.RECONCILED, _E.BIRTH): _D.RECONCILING,
    **{(_D.RECONCILED, e): s for e, s in _OFFLINE},
    # In FAULT, traffic is noted (self-loops) but only an operator moves the device on.
    **{(_D.FAULT, e): _D.FAULT for e in (_E.BIRTH, _E.TELEMETRY, _E.WILL, _E.SILENCE,
                                         _E.CHAIN_BROKEN)},
    (_D.FAULT, _E.RESET): _D.UNKNOWN,
})

WATCHED_FOR_SILENCE = frozenset({_D.LIVE, _D.RECONCILING, _D.RECONCILED})
"""States in which a device is expected to speak: silence past the timeout takes SILENCE. The
others are offline already (PROJECTED, UNKNOWN) or not trusted (FAULT)."""

SHOWN_OFFLINE = frozenset({_D.PROJECTED, _D.UNKNOWN})
"""States in which the hub holds no live picture of the device: a birth seen there is news even
when identical to the last one (after a last will the broker's retained status is `offline`)."""


class ContractStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    PUSHED = "pushed"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    ACTIVE = "active"
    HELD = "held"
    TRIPPED = "tripped"  # the device latched safe_state (guard trip, autonomy, engine error)
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        """Nothing the hub decides moves it on (only a device's REINSTATE of a superseded one)."""
        return self in _TERMINAL

    @property
    def claims_points(self) -> bool:
        """Whether a contract in this status owns its write points (invariant 2: write conflicts)."""
        return self in _CLAIMING


_C = ContractStatus
_TERMINAL = frozenset({_C.REFUSED, _C.COMPLETED, _C.FAILED, _C.ABORTED, _C.SUPERSEDED, _C.EXPIRED})
_CLAIMING = frozenset({_C.SUBMITTED, _C.PUSHED, _C.ACCEPTED, _C.ACTIVE, _C.HELD, _C.TRIPPED})


class ContractEvent(enum.StrEnum):
    PUSH = "push"
    ACCEPT = "accept"
    REFUSE = "refuse"
    START = "start"
    HOLD = "hold"
    RESUME = "resume"
    TRIP = "trip"  # the device's journal shows the latch; only RESUME (the journal's) leaves it
    COMPLETE = "complete"
    FAIL = "fail"
    ABORT = "abort"
    SUPERSEDE = "supersede"
    EXPIRE = "expire"
    REINSTATE = "reinstate"  # the device fell back to this known-good contract by itself (I2)


_CE = ContractEvent
_ENDINGS = {_CE.ABORT: _C.ABORTED, _CE.SUPERSEDE: _C.SUPERSEDED, _CE.EXPIRE: _C.EXPIRED}

CONTRACT_TRANSITIONS: Mapping[tuple[ContractStatus, ContractEvent], ContractStatus] = MappingProxyType({
    (_C.SUBMITTED, _CE.PUSH): _C.PUSHED,
    **{(_C.SUBMITTED, e): s for e, s in _ENDINGS.items()},
    (_C.PUSHED, _CE.PUSH): _C.PUSHED,      # re-push after a lost result: idempotent on the agent
    (_C.PUSHED, _CE.ACCEPT): _C.ACCEPTED,
    (_C.PUSHED, _CE.REFUSE): _C.REFUSED,
    (_C.PUSHED, _CE.START): _C.ACTIVE,     # the accept result was lost but the journal shows a start
    (_C.PUSHED, _CE.HOLD): _C.HELD,        # operator holds before the accept result arrives
    (_C.PUSHED, _CE.FAIL): _C.FAILED,
    (_C.PUSHED, _CE.TRIP): _C.TRIPPED,     # tripped before the accept result arrived
    **{(_C.PUSHED, e): s for e, s in _ENDINGS.items()},
    (_C.ACCEPTED, _CE.START): _C.ACTIVE,
    (_C.ACCEPTED, _CE.HOLD): _C.HELD,
    (_C.ACCEPTED, _CE.FAIL): _C.FAILED,
    (_C.ACCEPTED, _CE.TRIP): _C.TRIPPED,
    **{(_C.ACCEPTED, e): s for e, s in _ENDINGS.items()},
    (_C.ACTIVE, _CE.HOLD): _C.HELD,
    (_C.ACTIVE, _CE.COMPLETE): _C.COMPLETED,
    (_C.ACTIVE, _CE.FAIL): _C.FAILED,
    (_C.ACTIVE, _CE.TRIP): _C.TRIPPED,
    **{(_C.ACTIVE, e): s for e, s in _ENDINGS.items()},
    (_C.HELD, _CE.HOLD): _C.HELD,
    (_C.HELD, _CE.RESUME): _C.ACTIVE,
    (_C.HELD, _CE.FAIL): _C.FAILED,
    (_C.HELD, _CE.TRIP): _C.TRIPPED,
    **{(_C.HELD, e): s for e, s in _ENDINGS.items()},
    # Tripped: the latch holds until the device journals a resume (an operator's, or a policy's
    # explicit retry re-issuing the contract, which supersedes this version).
    (_C.TRIPPED, _CE.TRIP): _C.TRIPPED,
    (_C.TRIPPED, _CE.HOLD): _C.TRIPPED,    # policy `hold` after a trip: the latch is the hold
    (_C.TRIPPED, _CE.RESUME): _C.ACTIVE,
    (_C.TRIPPED, _CE.FAIL): _C.FAILED,
    **{(_C.TRIPPED, e): s for e, s in _ENDINGS.items()},
    # The one way out of a terminal status, and it is the device's: a contract a deployment
    # replaced, which the agent ran again by itself when the new one tripped inside its health
    # window (rollout_fallback, interface I2). It starts held: only an operator's resume runs it.
    (_C.SUPERSEDED, _CE.REINSTATE): _C.HELD,
    (_C.HELD, _CE.REINSTATE): _C.HELD,
})


__all__ = [
    "CONTRACT_TRANSITIONS", "DEPLOYMENT_TRANSITIONS", "DEVICE_TRANSITIONS", "EXECUTION_TRANSITIONS",
    "SHOWN_OFFLINE", "WATCHED_FOR_SILENCE", "ContractEvent", "ContractStatus", "DeploymentEvent",
    "DeploymentState", "DeviceEvent", "DeviceState", "ExecutionEvent", "ExecutionState",
]
