"""The rollout's two state machines as tables (issue 13; DESIGN invariant 7): a deployment's, and
each device's execution within it.

Deployment: planned → canary → wave (n times: the row keeps its index) → verifying → complete;
paused between any two of them (an operator's pause, or a manual approval after a gate), left by
the resume event that names where it goes on; rolling_back → rolled_back when a gate fails, the
abort threshold is crossed, a device falls back by itself, or an operator rolls back; failed when
the rollback itself cannot be carried out (only a retry leaves it, back to rolling_back).

A forward step that fails (a publish refused, the hub's MQTT side down) does not move the machine:
the step is marked failed and waits for a retry or a rollback (hub/rollout.py).

Execution, per device: queued → pushed → accepted → running → healthy, or failed at the first
failing gate; unreachable when it was offline past the wave's reach deadline (neither success nor
failure, counted apart; pushed on its return); skipped when the deployment stopped before its
wave; rolled_back once its known-good contract is back (or nothing of the deployment reached it).
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType


class DeploymentState(enum.StrEnum):
    PLANNED = "planned"
    CANARY = "canary"              # pushing the canary devices, then their gate
    WAVE = "wave"                  # pushing wave n (the deployment row's `wave`), then its gate
    VERIFYING = "verifying"        # every wave passed: the last check over all devices
    PAUSED = "paused"              # an operator's pause, or waiting for an approval
    COMPLETE = "complete"
    ROLLING_BACK = "rolling_back"  # every touched device back to its known-good contract
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"              # the rollback could not be carried out: an operator must look

    @property
    def active(self) -> bool:
        """Whether the engine has work to do in this state (a paused one waits for a person)."""
        return self in _ACTIVE

    @property
    def terminal(self) -> bool:
        return self in (DeploymentState.COMPLETE, DeploymentState.ROLLED_BACK)


class DeploymentEvent(enum.StrEnum):
    START = "start"
    GATE_PASSED = "gate_passed"            # more waves to go
    LAST_GATE_PASSED = "last_gate_passed"  # no wave left: verify
    VERIFIED = "verified"
    AWAIT_APPROVAL = "await_approval"      # approval "manual": a gate passed, a person decides
    PAUSE = "pause"                        # an operator's pause
    RESUME_PLANNED = "resume_planned"      # resume/approve: each names where the machine goes on
    RESUME_CANARY = "resume_canary"
    RESUME_WAVE = "resume_wave"
    RESUME_VERIFYING = "resume_verifying"
    GATE_FAILED = "gate_failed"            # a gate, the abort threshold, a device's own fallback
    ROLLBACK = "rollback"                  # an operator's
    ROLLBACK_DONE = "rollback_done"
    ERROR = "error"                        # a rollback step failed
    RETRY = "retry"


_P, _PE = DeploymentState, DeploymentEvent
_ACTIVE = frozenset({_P.PLANNED, _P.CANARY, _P.WAVE, _P.VERIFYING, _P.ROLLING_BACK})
_FORWARD = (_P.CANARY, _P.WAVE, _P.VERIFYING)

RESUME_EVENTS: Mapping[DeploymentState, DeploymentEvent] = MappingProxyType({
    _P.PLANNED: _PE.RESUME_PLANNED, _P.CANARY: _PE.RESUME_CANARY, _P.WAVE: _PE.RESUME_WAVE,
    _P.VERIFYING: _PE.RESUME_VERIFYING})
"""The event that leaves PAUSED for the state a paused deployment goes on in."""

DEPLOYMENT_TRANSITIONS: Mapping[tuple[DeploymentState, DeploymentEvent], DeploymentState] = (
    MappingProxyType({
        (_P.PLANNED, _PE.START): _P.CANARY,
        (_P.PLANNED, _PE.PAUSE): _P.PAUSED,
        (_P.PLANNED, _PE.ROLLBACK): _P.ROLLED_BACK,  # nothing pushed yet: nothing to undo
        (_P.CANARY, _PE.GATE_PASSED): _P.WAVE,
        (_P.CANARY, _PE.LAST_GATE_PASSED): _P.VERIFYING,
        (_P.WAVE, _PE.GATE_PASSED): _P.WAVE,
        (_P.WAVE, _PE.LAST_GATE_PASSED): _P.VERIFYING,
        (_P.VERIFYING, _PE.VERIFIED): _P.COMPLETE,
        **{(s, _PE.AWAIT_APPROVAL): _P.PAUSED for s in _FORWARD},
        **{(s, _PE.PAUSE): _P.PAUSED for s in _FORWARD},
        **{(s, _PE.GATE_FAILED): _P.ROLLING_BACK for s in _FORWARD},
        **{(s, _PE.ROLLBACK): _P.ROLLING_BACK for s in _FORWARD},
        **{(_P.PAUSED, e): s for s, e in RESUME_EVENTS.items()},
        (_P.PAUSED, _PE.GATE_FAILED): _P.ROLLING_BACK,  # a device fell back while paused
        (_P.PAUSED, _PE.ROLLBACK): _P.ROLLING_BACK,
        (_P.COMPLETE, _PE.ROLLBACK): _P.ROLLING_BACK,   # rehearsed: back to known-good on demand
        (_P.ROLLING_BACK, _PE.ROLLBACK_DONE): _P.ROLLED_BACK,
        (_P.ROLLING_BACK, _PE.ERROR): _P.FAILED,
        (_P.FAILED, _PE.RETRY): _P.ROLLING_BACK,
    })
)


class ExecutionState(enum.StrEnum):
    QUEUED = "queued"
    PUSHED = "pushed"
    ACCEPTED = "accepted"        # its journal shows the contract accepted (that content hash)
    RUNNING = "running"          # ... and the contract running (a boot or cycles)
    HEALTHY = "healthy"          # its gate passed on its own journal's evidence
    FAILED = "failed"            # a gate failed (the evidence is kept)
    UNREACHABLE = "unreachable"  # offline past the reach deadline: neither success nor failure
    SKIPPED = "skipped"          # never pushed: the deployment stopped before its wave
    ROLLED_BACK = "rolled_back"  # back on its known-good contract (or never touched)

    @property
    def settled(self) -> bool:
        """Whether a wave's gate has its answer for this device."""
        return self in _SETTLED


class ExecutionEvent(enum.StrEnum):
    PUSH = "push"
    ACCEPT = "accept"
    RUN = "run"
    PASS = "pass"
    FAIL = "fail"
    UNREACH = "unreach"
    SKIP = "skip"
    ROLL_BACK = "roll_back"


_X, _XE = ExecutionState, ExecutionEvent
_SETTLED = frozenset({_X.HEALTHY, _X.FAILED, _X.UNREACHABLE, _X.SKIPPED, _X.ROLLED_BACK})
_REACHED = (_X.PUSHED, _X.ACCEPTED, _X.RUNNING)

EXECUTION_TRANSITIONS: Mapping[tuple[ExecutionState, ExecutionEvent], ExecutionState] = (
    MappingProxyType({
        (_X.QUEUED, _XE.PUSH): _X.PUSHED,
        (_X.QUEUED, _XE.UNREACH): _X.UNREACHABLE,
        (_X.QUEUED, _XE.SKIP): _X.SKIPPED,
        (_X.QUEUED, _XE.ROLL_BACK): _X.ROLLED_BACK,  # never pushed: nothing to undo
        (_X.PUSHED, _XE.ACCEPT): _X.ACCEPTED,
        (_X.PUSHED, _XE.RUN): _X.RUNNING,             # the accept entry and the start together
        (_X.ACCEPTED, _XE.RUN): _X.RUNNING,
        **{(s, _XE.PASS): _X.HEALTHY for s in _REACHED},
        **{(s, _XE.FAIL): _X.FAILED for s in (*_REACHED, _X.HEALTHY)},  # healthy, then fell back
        **{(s, _XE.UNREACH): _X.UNREACHABLE for s in _REACHED},
        (_X.UNREACHABLE, _XE.PUSH): _X.PUSHED,        # back: it gets what the deployment says now
        (_X.UNREACHABLE, _XE.ACCEPT): _X.ACCEPTED,    # back, and the earlier push had landed
        (_X.UNREACHABLE, _XE.RUN): _X.RUNNING,
        (_X.UNREACHABLE, _XE.PASS): _X.HEALTHY,
        (_X.UNREACHABLE, _XE.FAIL): _X.FAILED,
        **{(s, _XE.ROLL_BACK): _X.ROLLED_BACK
           for s in (*_REACHED, _X.HEALTHY, _X.FAILED, _X.UNREACHABLE, _X.SKIPPED)},
    })
)
