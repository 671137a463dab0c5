"""What each device of a deployment step goes through: pushed, judged, restored — one device at a
time, each change committed with the step's record (hub/store/deployments.py `write`), in the
step's batch (hub/rollout_engine.py `Progress`); a reserved version at once (write-ahead).

Rules:
- A device is pushed only while it is online (heard since this hub started, and not projected,
  unknown or in FAULT); an offline
  one stays queued until it comes back or the wave's reach deadline passes (then `unreachable`,
  counted apart).
- A device is judged on its own journal only (hub/rollout_gate.py: the HealthJudge, I3); its
  first failing gate and the evidence (journal seqs and values) are kept on its row. One still
  unproven at its gate's verify deadline (online: a GAP in its journal inside the window, or no
  entry at or after the window's end) fails as `unproven` with what was missing.
- Restoring a device: one that fell back by itself (`rollout_fallback`, I2) is left alone — it
  runs its known-good contract, held, and only an operator's resume runs it (invariant 9); one
  whose contract tripped (latched in safe state) is left there too, `failed` with the reason
  `latched: ...`, since a new contract would run the process again without that resume; one
  with a known-good contract gets it again at the next version; one the deployment installed
  (nothing before) has that contract aborted (outputs to safe state).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from contracts.rollout_spec import Gate
from contracts.types import EpochMs
from hub.drift import OFFLINE_STATES
from hub.live import LiveValues
from hub.refusals import IllegalRequest
from hub.rollout_gate import (FALLBACK_GATE, UNPROVEN, Health, HealthJudge, HealthSpec,
                              evidence_view, unproven)
from hub.rollout_push import Issuer
from hub.states import ContractStatus, DeviceState, ExecutionEvent, ExecutionState, transition
from hub.store import HubStore, NotFound
from hub.store.deployments import DeploymentRecord, ExecutionRecord, StepRecord

_X, _XE = ExecutionState, ExecutionEvent
_UNPROVEN = (_X.PUSHED, _X.ACCEPTED, _X.RUNNING)
LATCHED = "latched"
"""The reason prefix of a device left in its safe state by a rollback: its contract tripped, and
replacing it with the known-good one would run the process again without an operator's resume
(invariant 9). It stays `failed`; an operator resumes or re-issues by hand."""

LATCHING_GATES = frozenset({Gate.GUARD_TRIP.value, Gate.SAFE_UNCONFIRMED.value})
"""Gates whose failure is the device's own word that its contract is latched in safe state."""


class Commit(Protocol):
    """Writes the changed devices with the step's result, in one transaction: in the step's
    batch, or at once when `durable` (hub/rollout_engine.py `Progress`)."""

    def __call__(self, devices: list[ExecutionRecord], result: Mapping[str, Any], *,
                 durable: bool = False) -> None: ...


def moved(ex: ExecutionRecord, event: ExecutionEvent, now: EpochMs, **fields: Any) -> ExecutionRecord:
    """`ex` after `event` (raises IllegalTransition), with `fields`."""
    return replace(ex, state=transition(ex.state, event), updated_ms=now, **fields)


class DeviceSteps:
    def __init__(self, store: HubStore, issuer: Issuer, judge: HealthJudge,
                 live: Mapping[str, LiveValues], clock: Callable[[], EpochMs]) -> None:
        self.live = live
        self.store, self.issuer, self.health, self.clock = store, issuer, judge, clock
        self.since_ms = clock()

    def online(self, device: str) -> bool:
        """Heard from since this hub started, and not offline since: after a restart what the
        store says of a device is stale until it speaks again (a push to a device that was
        online before a crash and has not reconnected would be lost)."""
        try:
            rec = self.store.devices.get(device)
        except NotFound:
            return False
        live = self.live.get(device)
        seen = max(rec.last_seen_ms or 0, live.received_ms if live is not None else 0)
        return rec.state not in OFFLINE_STATES and rec.state is not DeviceState.FAULT and \
            seen >= self.since_ms

    def reserve(self, rows: list[ExecutionRecord], commit: Commit) -> list[ExecutionRecord]:
        """`rows` with a version reserved for each that has none, written ahead in one
        transaction (before any of them is pushed)."""
        out = [ex if ex.issued is not None else
               replace(ex, issued=self.issuer.reserve(ex.contract), updated_ms=self.clock())
               for ex in rows]
        fresh = [ex for ex, was in zip(out, rows) if was.issued is None]
        if fresh:
            commit(fresh, {"reserved": {ex.label: ex.issued for ex in fresh}}, durable=True)
        return out

    async def push(self, dep: DeploymentRecord, ex: ExecutionRecord, step: StepRecord,
                   commit: Commit, *, again: bool = False) -> ExecutionRecord:
        """Push the snapshot's contract to `ex.device` (reserved first, then issued). `again`:
        the device was offline when it was published, so a record still PUSHED (never
        accepted) is published once more, the same signed bytes."""
        if ex.issued is None:
            ex = replace(ex, issued=self.issuer.reserve(ex.contract), updated_ms=self.clock())
            commit([ex], {"reserved": {ex.label: ex.issued}}, durable=True)
        assert ex.issued is not None
        cid, digest = await self.issuer.issue(
            ex.issued, lambda v: self.issuer.forward_document(dep, ex, v), f"deployment:{dep.id}",
            republish=again)
        now = self.clock()
        ex = moved(ex, _XE.PUSH, now, content_hash=digest, pushed_ms=ex.pushed_ms or now)
        commit([ex], {"pushed": {ex.label: cid}})
        return ex

    def judge(self, dep: DeploymentRecord, ex: ExecutionRecord, spec: HealthSpec,
              deadline_ms: EpochMs | None,
              verify_by_ms: EpochMs | None = None) -> ExecutionRecord | None:
        """`ex` after its evidence so far (None: nothing changed). Past `deadline_ms` (the reach
        deadline) a device offline and unproven is unreachable; past `verify_by_ms` one online
        and still unproven fails as `unproven`."""
        assert ex.issued is not None and ex.content_hash is not None
        now = self.clock()
        verdict = self.judge_of(dep, ex, spec, now)
        if verdict.health is Health.HEALTHY and ex.state is not _X.HEALTHY:
            return moved(ex, _XE.PASS, now, evidence=evidence_view(verdict.evidence))
        if verdict.health is Health.FAILED and ex.state is not _X.FAILED:
            return moved(ex, _XE.FAIL, now, reason=verdict.gate,
                         evidence=evidence_view(verdict.evidence))
        if verdict.health is not Health.PENDING or ex.state not in _UNPROVEN:
            return None
        seen = {e.what for e in verdict.evidence}
        if "boot" in seen and ex.state in (_X.PUSHED, _X.ACCEPTED):
            return moved(ex, _XE.RUN, now, evidence=evidence_view(verdict.evidence))
        if "accepted" in seen and ex.state is _X.PUSHED:
            return moved(ex, _XE.ACCEPT, now, evidence=evidence_view(verdict.evidence))
        late = deadline_ms is not None and now >= deadline_ms
        if late and not self.online(ex.device):
            return moved(ex, _XE.UNREACH, now, reason="offline past the reach deadline")
        if verify_by_ms is not None and now >= verify_by_ms:
            return moved(ex, _XE.FAIL, now, reason=UNPROVEN,
                         evidence=evidence_view(unproven(verdict, verify_by_ms)))
        return None

    def judge_of(self, dep: DeploymentRecord, ex: ExecutionRecord, spec: HealthSpec,
                 now: EpochMs) -> Any:
        assert ex.issued is not None and ex.content_hash is not None
        return self.health.judge(ex.device, ex.issued, ex.content_hash, ex.pushed_ms or now, spec,
                                now, canary=ex.wave == 0)

    async def restore(self, dep: DeploymentRecord, ex: ExecutionRecord,
                      commit: Commit) -> ExecutionRecord:
        """Back to its known-good contract (see the rules); the row rolled back."""
        now = self.clock()
        actor = f"deployment:{dep.id}"
        if ex.state is _X.QUEUED:
            return moved(ex, _XE.SKIP, now)
        if ex.issued is None or ex.reason == FALLBACK_GATE:
            why = "fell back by itself (held)" if ex.reason == FALLBACK_GATE else "never pushed"
            return moved(ex, _XE.ROLL_BACK, now, restore=None,
                         reason=ex.reason if ex.reason == FALLBACK_GATE else why)
        if ex.known_good is None:
            await self._abort(ex.issued, actor)
            return moved(ex, _XE.ROLL_BACK, now)
        if self.latched(ex):
            return replace(ex, updated_ms=now, reason=f"{LATCHED}: {ex.reason or 'tripped'}")
        if ex.restore is None:
            ex = replace(ex, restore=self.issuer.reserve(ex.contract), updated_ms=now)
            commit([ex], {"reserved": {ex.label: ex.restore}}, durable=True)
        assert ex.restore is not None
        await self.issuer.issue(ex.restore, lambda v: self.issuer.restore_document(ex, v), actor)
        return moved(ex, _XE.ROLL_BACK, self.clock())

    def latched(self, ex: ExecutionRecord) -> bool:
        """Whether the contract it was pushed is latched in safe state: its own journal failed
        its gate on a trip (or a safe state unconfirmed), or the hub has it TRIPPED. The journal
        first: the gate reads the trip entry as soon as it is stored, and the contract's status
        may follow later (a rollback alone restores at once, in the same pass)."""
        if ex.reason is not None and ex.reason.startswith(LATCHED):
            return True
        if ex.state is _X.FAILED and ex.reason in LATCHING_GATES:
            return True
        try:
            return ex.issued is not None and \
                self.store.contracts.get(ex.issued).status is ContractStatus.TRIPPED
        except NotFound:
            return False

    async def _abort(self, cid: str, actor: str) -> None:
        try:
            await self.issuer.service.abort(cid, actor, "deployment rolled back: nothing to "
                                                        "restore, the device had no contract")
        except IllegalRequest:  # ended already (refused, superseded, aborted): nothing runs
            pass
