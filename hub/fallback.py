"""The hub's side of an agent's own fallback (interface I2) — decisions over the hub's records, pure.

When a contract a deployment pushed trips inside its health window, the agent runs the known-good
contract it replaced again, by itself (hub or not), held with its safe state confirmed by read-back,
and journals `rollout_fallback` {deployment, known_good (hash), fallback ("name@version"), cause,
cause_seq}, tagged with the tripped contract. When the hub ingests that entry (hub/sync/journal.py):
- the tripped contract FAILs: the hub's record of that contract on the device whose `rollout`
  names the same deployment and known-good hash (else the highest version of it still claiming its
  points), with the cause and its seq in the reason;
- the known-good contract is REINSTATEd (superseded → held: hub/states/tables.py), but only if the
  hub issued that id to this device with the very hash the agent names — anything else is a claim
  the hub cannot check (claim_mismatch alarm; nothing reinstated) — and no version newer than the
  tripped one is in force already (a hub-side rollback pushed one: that replaces the known-good);
- the `rollout_fallback` alarm is raised from the entry itself (hub/alarms.py; an accepted resume
  clears it), and the agent's act is audited as `fallback` (actor `agent:<device>`) with the fields.
An operator's resume runs the known-good again; automation never does (invariant 9). A deployment
treats the same entry as a failed gate (contracts/rollout_health.py, gate `rollout_fallback`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts.limits import quote
from hub.store import ContractRecord

FIELDS = ("deployment", "known_good", "fallback", "cause", "cause_seq")
"""The I2 fields, in the order the audit and the reason quote them."""


@dataclass(frozen=True, kw_only=True)
class FallbackPlan:
    tripped: str | None      # the contract id to FAIL
    known_good: str | None   # the contract id to REINSTATE
    problem: str | None      # why the known-good could not be reinstated (alarmed), if not
    reason: str              # for both transitions and the audit

    def detail(self, fields: Mapping[str, Any], seq: int) -> dict[str, Any]:
        """The audit's detail: the agent's fields (bounded quotes) and the entry's seq."""
        return {**{k: _bounded(fields.get(k)) for k in FIELDS}, "seq": seq,
                "tripped": self.tripped, "reinstated": self.known_good}


def plan_fallback(device: str, tag: str | None, fields: Mapping[str, Any],
                  records: Iterable[ContractRecord]) -> FallbackPlan:
    """What a `rollout_fallback` entry of `device` (tagged `tag`) changes among the hub's
    `records` of that device's contracts."""
    mine = [r for r in records if r.device == device]
    cause, seq, fallback = fields.get("cause"), fields.get("cause_seq"), fields.get("fallback")
    reason = (f"rollout_fallback: {quote(cause, bare=True)} at seq {quote(seq, bare=True)}; "
              f"the device runs {quote(fallback, bare=True)} again, held")
    known, problem = _known_good(mine, fallback, fields.get("known_good"))
    tripped = _tripped(mine, tag, fields, exclude=known)
    if known is not None and _replaced(mine, tag, tripped):
        known = None  # the hub issued a newer version already: it replaces the known-good there
    return FallbackPlan(tripped=tripped, known_good=known, problem=problem, reason=reason)


def _replaced(mine: list[ContractRecord], tag: str | None, tripped: str | None) -> bool:
    """Whether a version newer than the tripped one is issued and still in force (a hub-side
    rollback, say): reinstating the known-good there would show a contract nothing runs for long."""
    top = next((r.version for r in mine if r.id == tripped), None)
    return top is not None and any(r.contract == tag and r.version > top and r.status.claims_points
                                   for r in mine)


def _known_good(mine: list[ContractRecord], fallback: Any, digest: Any) -> tuple[str | None, str | None]:
    found = next((r for r in mine if r.id == fallback), None)
    if found is None:
        return None, (f"rollout_fallback names {quote(fallback, bare=True)} as its known-good "
                      "contract, which the hub never issued to this device")
    if found.content_hash != digest:
        return None, (f"rollout_fallback names {found.id} with hash {quote(digest, 20, bare=True)}, "
                      f"the hub issued it with {found.content_hash[:16]}")
    return found.id, None


def _tripped(mine: list[ContractRecord], tag: str | None, fields: Mapping[str, Any], *,
             exclude: str | None) -> str | None:
    same = [r for r in mine if r.contract == tag and r.id != exclude and r.id != fields.get("fallback")]
    pushed = [r for r in same if _rollout(r).get("deployment") == fields.get("deployment")
              and _rollout(r).get("known_good") == fields.get("known_good")]
    pool = pushed or [r for r in same if r.status.claims_points]
    return max(pool, key=lambda r: r.version).id if pool else None


def _rollout(r: ContractRecord) -> Mapping[str, Any]:
    rollout = r.document.get("rollout") if isinstance(r.document, Mapping) else None
    return rollout if isinstance(rollout, Mapping) else {}


def _bounded(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    return quote(value, 80, bare=True)
