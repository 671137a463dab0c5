"""The planner — pure: a divergent reconciliation (or a failed contract) in, a decision out.

Policies are configuration (hub.toml `[policies.<category>]`), not code: the failure category picks
the action, and `max_retries` bounds automatic re-issues per contract id before the planner
escalates instead. Actions:
  retry     re-issue the contract from the device's actual step, with a new validity window of the
            original length starting now, as the next version (the default planner);
  reassign  the same, addressed to another capable device (same site, same point map);
  escalate  no automatic action: an alarm for an operator;
  hold      command the device to HOLD (outputs kept, steps paused);
  abort     command the device to ABORT (safe_state).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.schema import Contract, format_time, to_mapping
from contracts.types import EpochMs
from hub.config import FailureCategory, Policy, PolicyAction


@dataclass(frozen=True, kw_only=True)
class Decision:
    action: PolicyAction
    reason: str
    category: FailureCategory
    document: dict[str, Any] | None = None  # the new contract to sign and push (retry/reassign)
    device: str | None = None               # where it goes


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
    if device is not None:
        doc["device"] = device
    return doc


def decide(*, contract: Contract, category: FailureCategory, reason: str,
           policies: Mapping[FailureCategory, Policy], retries: int, next_version: int,
           actual_step: int | None, now_ms: EpochMs,
           capable: Sequence[str] = ()) -> Decision:
    """What to do about a divergent or failed contract."""
    policy = policies.get(category, Policy(action=PolicyAction.ESCALATE, max_retries=0))
    action = policy.action
    if action in (PolicyAction.RETRY, PolicyAction.REASSIGN) and retries >= policy.max_retries:
        return Decision(action=PolicyAction.ESCALATE, category=category,
                        reason=f"{reason}; {retries} automatic re-issues already (max "
                               f"{policy.max_retries}): escalating")
    step = actual_step if actual_step is not None else 0
    if action is PolicyAction.REASSIGN:
        others = [d for d in capable if d != contract.device]
        if not others:
            return Decision(action=PolicyAction.ESCALATE, category=category,
                            reason=f"{reason}; no other capable device to reassign to")
        doc = replan_document(contract, from_step=step, version=next_version, now_ms=now_ms,
                              device=others[0])
        return Decision(action=action, category=category, reason=reason, document=doc,
                        device=others[0])
    if action is PolicyAction.RETRY:
        doc = replan_document(contract, from_step=step, version=next_version, now_ms=now_ms)
        return Decision(action=action, category=category, reason=reason, document=doc,
                        device=contract.device)
    return Decision(action=action, category=category, reason=reason)
