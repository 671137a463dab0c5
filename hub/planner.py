"""The planner — pure: a divergent reconciliation (or a failed contract) in, a decision out.

Policies are configuration (hub.toml `[policies.<category>]`), not code: the failure category picks
the action, and `max_retries` bounds automatic re-issues per contract *lineage* (hub/lineage.py:
the operator's version and every version re-issued from it, whatever triggered each re-issue)
before the planner escalates instead. A re-issue that is allowed still waits (`wait`) for the
lineage's backoff and, after a trip (category `trip`), for the inputs to have been healthy for the
settle time. The default policy for a trip is `hold`: the agent's latch stays until an operator
resumes (DESIGN invariant 9). Actions:
  retry     re-issue the contract from the device's actual step, with a new validity window of the
            original length starting now, as the next version (the default planner);
  reassign  the same, addressed to another capable device (same site, same point map);
  escalate  no automatic action: an alarm for an operator;
  hold      command the device to HOLD (outputs kept, steps paused);
  abort     command the device to ABORT (safe_state);
  wait      (the planner's own) a retry that is allowed but not yet: decided again later.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.schema import Contract
from contracts.schema_serialize import format_time, to_mapping
from contracts.types import EpochMs
from hub.policy import FailureCategory, Policy, PolicyAction, RetryConfig
from hub.lineage import Budget, wait_reason


@dataclass(frozen=True, kw_only=True)
class Decision:
    action: PolicyAction
    reason: str
    category: FailureCategory
    document: dict[str, Any] | None = None  # the new contract to sign and push (retry/reassign)
    device: str | None = None               # where it goes
    retries: int = 0                        # automatic re-issues of the lineage before this one


def replan_document(contract: Contract, *, from_step: int, version: int, now_ms: EpochMs,
                    device: str | None = None) -> dict[str, Any]:
    """The contract re-issued from step `from_step` (0-based) as `version`, valid from `now_ms`
    for as long as the original window was. Raises ValueError for a step outside the contract."""
    if not 0 <= from_step < len(contract.steps):
        raise ValueError(f"from_step: {from_step} is not a step of {contract.contract} "
                         f"(0..{len(contract.steps) - 1})")
    doc = to_mapping(contract)
    window = contract.valid_until - contract.valid_from
    doc["steps"] = doc["steps"][from_step:]
    doc["version"] = version
    doc["valid_from"] = format_time(now_ms)
    doc["valid_until"] = format_time(now_ms + window)
    labels = dict(doc.get("labels") or {})
    labels["replanned_from"] = f"{contract.contract}@{contract.version}"
    doc["labels"] = labels
    # A deployment's `rollout` is about its push (its health window, the known-good to fall back
    # to): a re-issue is the planner's decision, not the deployment's, and is not on probation.
    doc.pop("rollout", None)
    if device is not None:
        doc["device"] = device
    return doc


def decide(*, contract: Contract, category: FailureCategory, reason: str,
           policies: Mapping[FailureCategory, Policy], budget: Budget, next_version: int,
           actual_step: int | None, now_ms: EpochMs, capable: Sequence[str] = (),
           retry: RetryConfig = RetryConfig(), healthy_since_ms: EpochMs | None = None) -> Decision:
    """What to do about a divergent, tripped, refused or failed contract."""
    policy = policies.get(category, Policy(action=PolicyAction.ESCALATE, max_retries=0))
    action, retries = policy.action, budget.retries
    if action in (PolicyAction.RETRY, PolicyAction.REASSIGN):
        if retries >= policy.max_retries:
            return Decision(action=PolicyAction.ESCALATE, category=category, retries=retries,
                            reason=f"{reason}; {retries} automatic re-issues already (max "
                                   f"{policy.max_retries}): escalating")
        wait = wait_reason(budget, now_ms, trip=category is FailureCategory.TRIP,
                           healthy_since_ms=healthy_since_ms, cfg=retry)
        if wait is not None:
            return Decision(action=PolicyAction.WAIT, category=category, retries=retries,
                            reason=f"{reason}; {action.value} waits: {wait}")
    return _act(action, contract, category, reason, retries, next_version, actual_step, now_ms,
                capable)


def _act(action: PolicyAction, contract: Contract, category: FailureCategory, reason: str,
         retries: int, next_version: int, actual_step: int | None, now_ms: EpochMs,
         capable: Sequence[str]) -> Decision:
    step = actual_step if actual_step is not None else 0
    if action is PolicyAction.REASSIGN:
        others = [d for d in capable if d != contract.device]
        if not others:
            return Decision(action=PolicyAction.ESCALATE, category=category,
                            reason=f"{reason}; no other capable device to reassign to")
        doc = replan_document(contract, from_step=step, version=next_version, now_ms=now_ms,
                              device=others[0])
        return Decision(action=action, category=category, reason=reason, document=doc,
                        device=others[0], retries=retries)
    if action is PolicyAction.RETRY:
        doc = replan_document(contract, from_step=step, version=next_version, now_ms=now_ms)
        return Decision(action=action, category=category, reason=reason, document=doc,
                        device=contract.device, retries=retries)
    return Decision(action=action, category=category, reason=reason, retries=retries)
