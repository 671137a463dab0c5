"""The audit trail: who asked the hub to do what, to which device and contract, and how it went.

Every operator-facing action (submit, push, hold, abort, reconcile request) is audited at each
step with its actor and outcome, including refusals: a 409 is as much part of the record as a 201.
Entries are values; the store persists them and the API lists them.
"""
from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from contracts.types import EpochMs

log = logging.getLogger("fieldpact.hub.audit")


class AuditAction(enum.StrEnum):
    SUBMIT = "submit"
    SIGN = "sign"
    PUSH = "push"
    HOLD = "hold"
    ABORT = "abort"
    RESUME = "resume"          # an operator's resume sent; the agent's answer is audited by "hub"
    RESET = "reset"            # an admin's reset of a device out of FAULT
    ACK = "ack"                # an operator acknowledged an alarm
    RECONCILE_REQUEST = "reconcile_request"
    TRANSITION = "transition"  # a state change decided by the hub itself (sync side, policies)
    RECONCILE = "reconcile"    # divergence measured after a device's journal caught up
    REPLAN = "replan"          # the planner's decision for a divergent or failed contract
    ALARM = "alarm"            # a broken chain, a journal gap, an escalation
    DEVICE_REGISTER = "device_register"  # an admin registered a device (hub/registry.py)
    DEVICE_REMOVE = "device_remove"
    KEY_ENROLL = "key_enroll"            # an admin enrolled a device's journal public key
    ENDPOINTS_SET = "endpoints_set"  # an admin set a device's endpoints (hub/device_endpoints.py)
    DESIGN_ADD = "design_add"            # fleet configuration (hub/fleet.py): a design version,
    BINDING_ADD = "binding_add"          # a binding revision,
    SNAPSHOT_CREATE = "snapshot_create"  # a snapshot made (detail: what from),
    DESIRED_SET = "desired_set"          # a device's desired snapshot set
    DESIRED_CLEAR = "desired_clear"      # a device's desired snapshot cleared (hub/fleet.py)
    COMMISSION = "commission"            # an operator asked an agent for a commissioning report
    DEPLOY = "deploy"                    # a deployment made, paused, resumed, approved, retried
    DEPLOY_STEP = "deploy_step"          # a deployment step done or failed (hub/rollout_engine.py)
    DEPLOY_ROLLBACK = "deploy_rollback"  # a deployment rolled back: who or what, why, evidence
    FALLBACK = "fallback"                # an agent fell back to its known-good contract (I2)


class Outcome(enum.StrEnum):
    OK = "ok"
    REFUSED = "refused"  # the request was wrong: invalid, conflicting, stale version, illegal state
    FAILED = "failed"    # the request was right but the hub could not carry it out (publish failed)


SYSTEM_ACTOR = "hub"
"""Actor recorded for actions the hub takes on its own (replans, policies, sync)."""


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    ts_ms: EpochMs
    actor: str
    action: AuditAction
    outcome: Outcome
    device: str | None = None
    contract: str | None = None  # "contract@version" when a version is known
    reason: str | None = None
    detail: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    id: int | None = None  # assigned by the store


def log_entry(entry: AuditEntry) -> None:
    """Mirror an audit entry to the structured log (operators grep logs before they query)."""
    log.info(
        "audit action=%s outcome=%s actor=%s device=%s contract=%s reason=%s",
        entry.action.value, entry.outcome.value, entry.actor, entry.device, entry.contract,
        entry.reason,
        extra={"event": "audit", "action": entry.action.value, "outcome": entry.outcome.value,
               "actor": entry.actor, "device": entry.device, "contract": entry.contract},
    )


class DecisionAudit:
    """Audits the hub's own decisions (reconciliations, replans: outcome OK) into `sink`
    (`store.audit.add`), stamped by `clock`. Unlike an operator's request, it is not mirrored to
    the log line by line: the deciding module logs its own event."""

    def __init__(self, sink: Callable[[AuditEntry], object], clock: Callable[[], EpochMs]) -> None:
        self.sink, self.clock = sink, clock

    def __call__(self, actor: str, what: AuditAction, device: str, contract: str, reason: str,
                 **detail: Any) -> None:
        self.sink(AuditEntry(ts_ms=self.clock(), actor=actor, action=what, outcome=Outcome.OK,
                             device=device, contract=contract, reason=reason, detail=detail))
