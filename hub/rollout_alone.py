"""A device rolled back alone (issue 13): one that fails its gate while the deployment goes on
(its failures under the abort threshold) goes back to its known-good contract by the push path of
a deployment's rollback (hub/rollout_steps.py `restore`), with a typed reason, audited as that
rollback is; the deployment goes on without it.

Rules:
- Which devices: a wave's device that failed while its gate did not fail (hub/rollout_flow.py;
  a failed gate rolls every device back instead, and a canary's failure always fails it), or
  one pushed on its return that failed (hub/rollout_converge.py).
- Its reason has the shape of a deployment's rollback, for one device: `initiated_by` "gate",
  `scope` "device", the gate, the device (and `devices`), the evidence (journal seqs and
  values), when, the snapshot, the step; then `result` and `restored` (the version issued).
- The safety choices of a deployment's rollback hold (hub/rollout_steps.py): one whose contract
  tripped stays latched (`failed`, reason `latched: ...`, result `latched`), never pushed over;
  one that fell back by itself keeps its own known-good, held (result `held`); one with no
  known-good has the deployment's contract aborted (result `aborted`).
- Write-ahead as any push: every reason of a pass (a device's failed contract and its
  siblings) is committed, result `waiting`, before any of them is restored; each restore's
  version is reserved before it is published. After a crash the next pass (the step resumed, or
  hub/rollout_converge.py for a device pushed on its return) finds each row not yet restored
  pending with its reason and restores it (published at most once: hub/rollout_push.py).
- One offline keeps its reason with result `waiting`, `failed`, and is restored on its return.
  A restore that cannot be published fails the step (a retry publishes it), as a push does.
- A device runs several contracts of the deployment (hub/rollout.py): one failed, the device
  failed, so all its contracts of the deployment go back together (`siblings`), each to its own
  known-good, the others carrying the failed one's reason (`failed_contract`) — each on its own
  safety choice: the tripped one latched, another restored (or aborted when it had none).
- It still counts as failed, in its gate and in every later gate's abort threshold
  (hub/rollout_gate.py `failed_gate`).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub.audit import AuditAction, Outcome
from hub.rollout_gate import FALLBACK_GATE
from hub.rollout_steps import LATCHED, Commit
from hub.states import ExecutionState
from hub.store.deployments import DeploymentRecord, ExecutionRecord

if TYPE_CHECKING:
    from hub.rollout_engine import RolloutEngine

_X = ExecutionState
WAITING = "waiting"
"""The outcome of a device rolled back alone while offline: restored on its return."""


def pending(ex: ExecutionRecord) -> bool:
    """Whether `ex` is still to be rolled back alone: failed with no reason yet, or given its
    reason while offline (a failed contract, or a sibling of one) and not restored since;
    never one latched."""
    if (ex.reason or "").startswith(LATCHED) or ex.state in _DONE:
        return False
    if ex.rollback is None:
        return ex.state is _X.FAILED
    return ex.rollback.get("result") == WAITING


_DONE = frozenset({_X.ROLLED_BACK, _X.SKIPPED})
_SIBLING = frozenset({_X.QUEUED, _X.PUSHED, _X.ACCEPTED, _X.RUNNING, _X.HEALTHY,
                      _X.UNREACHABLE})
"""A device's other contracts that go back with the one that failed (not judged failed)."""


def siblings(rows: Iterable[ExecutionRecord]) -> list[ExecutionRecord]:
    """`rows` to roll back alone, in order: each failed one pending, and with it its device's
    other contracts of the deployment not rolled back yet (a device with one failed contract
    is a failed device: it goes back to its known-good on all of them). A sibling carries the
    failed contract's reason, naming its own contract."""
    mine = list(rows)
    failing = origins(mine)
    return [ex for ex in mine if pending(ex) or (
        ex.device in failing and ex.rollback is None and ex.state in _SIBLING)]


def origins(rows: Iterable[ExecutionRecord]) -> dict[str, ExecutionRecord]:
    """Per device, its contract that failed and is (or was) rolled back alone: failed and
    pending, or given a reason of its own (so a pass that stopped after restoring it still
    takes its siblings back on the next)."""
    out: dict[str, ExecutionRecord] = {}
    for ex in rows:
        own = ex.rollback is not None and \
            ex.rollback.get("failed_contract", ex.contract) == ex.contract
        if own or (ex.state is _X.FAILED and pending(ex)):
            out.setdefault(ex.device, ex)
    return out


def reason(dep: DeploymentRecord, ex: ExecutionRecord, step: str, now: int,
           failed: ExecutionRecord | None = None) -> dict[str, Any]:
    """The typed reason for rolling `ex` back alone, before its outcome is known; `failed`: the
    contract of the same device that failed, when `ex` goes back with it."""
    why = failed or ex
    return {"initiated_by": "gate", "scope": "device", "gate": why.reason, "device": ex.device,
            "devices": [ex.device], "contract": ex.contract, "failed_contract": why.contract,
            "evidence": [{"device": ex.device, "contract": why.contract, "gate": why.reason,
                          "evidence": list(why.evidence)}],
            "ts_ms": now, "snapshot": dep.snapshot, "step": step, "result": WAITING,
            "restored": None}


def _outcome(before: ExecutionRecord, after: ExecutionRecord) -> str:
    if after.state is _X.SKIPPED:
        return "skipped"  # a sibling never pushed: it never will be
    if after.state is not _X.ROLLED_BACK:
        return "latched"
    if before.reason == FALLBACK_GATE:
        return "held"
    return "restored" if after.restore is not None else "aborted"


def resolved(before: ExecutionRecord, after: ExecutionRecord) -> ExecutionRecord:
    """`after` (restored by the deployment's own rollback) with the outcome of a rollback alone
    that was still waiting for it, so its reason never says `waiting` once it is back."""
    if before.rollback is None or before.rollback.get("result") != WAITING:
        return after
    return replace(after, rollback={**before.rollback, "result": _outcome(before, after),
                                    "restored": after.restore})


class AloneRollback:
    """The engine's device rollbacks (hub/rollout_engine.py)."""

    def __init__(self, engine: RolloutEngine) -> None:
        self.e = engine

    async def roll_back(self, dep: DeploymentRecord, rows: Iterable[ExecutionRecord], step: str,
                        commit: Commit) -> list[ExecutionRecord]:
        """Roll back each of `rows` that failed and is pending (online: now; offline: its
        reason kept, restored on its return); those it handled, as committed."""
        done: list[ExecutionRecord] = []
        mine = list(rows)
        failed = origins(mine)
        owed = siblings(mine)
        fresh = {ex.key: replace(ex, rollback=reason(dep, ex, step, self.e.clock(),
                                                     failed.get(ex.device)))
                 for ex in owed if ex.rollback is None}
        if fresh:  # the whole of each device's rollback on record before any of it is done
            commit(list(fresh.values()),
                   {"rolled_back_alone": {ex.label: WAITING for ex in fresh.values()}},
                   durable=True)
        for ex in (fresh.get(ex.key, ex) for ex in owed):
            if self.e.devices.online(ex.device):
                ex = await self.restore(dep, ex, commit)
            elif ex.key in fresh:  # offline: its reason now, its restore on its return
                self._audit(dep, ex)
            else:
                continue
            done.append(ex)
        return done

    async def restore(self, dep: DeploymentRecord, ex: ExecutionRecord,
                      commit: Commit) -> ExecutionRecord:
        """`ex` (with its reason) restored now, its outcome recorded and audited."""
        assert ex.rollback is not None
        after = resolved(ex, await self.e.devices.restore(dep, ex, commit))
        assert after.rollback is not None
        commit([after], {"rolled_back_alone": {ex.label: after.restore or
                                               after.rollback["result"]}})
        self._audit(dep, after)
        return after

    def _audit(self, dep: DeploymentRecord, ex: ExecutionRecord) -> None:
        assert ex.rollback is not None
        detail = {k: v for k, v in ex.rollback.items() if k not in ("device", "contract")}
        self.e.audit(dep.id, AuditAction.DEPLOY_ROLLBACK, Outcome.OK, str(ex.rollback["gate"]),
                     device=ex.device, contract=ex.restore or ex.issued,
                     contract_name=ex.contract, **detail,
                     state=ex.state.value)
