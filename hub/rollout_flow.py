"""The deployment's steps in order, and what each does on a pass (hub/rollout_engine.py runs them).

    planned --start--> canary:push -> canary:gate --> [approval] --> wave:1:push -> wave:1:gate
      --> ... --> verify --> complete;  a failed gate --> rollback --> rolled_back

- push: the wave's online devices, paced at the wave's rate (contracts/rollout_strategy.py); the
  offline ones stay queued for the gate. The step is done when every device was pushed or found
  offline.
- gate: until the wave's reach deadline a queued device that came online is pushed; each pushed
  device is judged; the gate's rules are hub/rollout_gate.py's. Failed: the typed rollback reason
  (which gate, which devices, their evidence) is stored with the transition.
- verify: every healthy device judged once more (a fallback that arrived late fails it).
- rollback: every touched, online device restored (hub/rollout_steps.py), but one latched in
  its safe state, which is left there for an operator; offline ones are restored when they come
  back (converge).
- converge: a device that was unreachable and is online again gets what the deployment says now:
  the snapshot while it goes on or once complete, its known-good contract once rolled back.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from contracts.rollout_strategy import Abort, Wave, push_offsets_ms
from hub.audit import AuditAction, Outcome
from hub.service import RequestRefused
from hub.rollout_gate import decide, parse_health
from hub.rollout_steps import LATCHED, moved
from hub.states import DeploymentEvent, DeploymentState, ExecutionEvent, ExecutionState
from hub.store.deployments import DeploymentRecord, ExecutionRecord, StepRecord

if TYPE_CHECKING:
    from hub.rollout_engine import RolloutEngine

_D, _E, _X, _XE = DeploymentState, DeploymentEvent, ExecutionState, ExecutionEvent
_TOUCHED = frozenset({_X.PUSHED, _X.ACCEPTED, _X.RUNNING, _X.HEALTHY, _X.FAILED, _X.UNREACHABLE})
_JUDGED = frozenset({_X.PUSHED, _X.ACCEPTED, _X.RUNNING})


def _wave_name(w: int) -> str:
    return "canary" if w == 0 else f"wave:{w}"


def _wave(dep: DeploymentRecord, index: int) -> Wave:
    w = dep.waves[index]
    return Wave(index=w["index"], kind=w["kind"], devices=tuple(w["devices"]),
                rate_per_min=w.get("rate_per_min"))


class Flow:
    def __init__(self, engine: RolloutEngine) -> None:
        self.e = engine

    # -- which step comes next ------------------------------------------------------------------
    def begin(self, dep: DeploymentRecord, last: StepRecord | None) -> None:
        """Start the step the deployment's state calls for (none is running)."""
        if dep.state is _D.PLANNED:
            self.e.start(dep, "canary:push", self._push_input(dep, 0, 0), last, event=_E.START,
                         wave=0)
        elif dep.state in (_D.CANARY, _D.WAVE):
            self.e.start(dep, f"{_wave_name(dep.wave)}:push",
                         self._push_input(dep, dep.wave, 0), last)
        elif dep.state is _D.VERIFYING:
            self.e.start(dep, "verify", {}, last)
        elif dep.state is _D.ROLLING_BACK:
            self.e.start(dep, "rollback", {"rollback": dict(dep.rollback or {})}, last)

    def belongs(self, dep: DeploymentRecord, step: StepRecord) -> bool:
        if dep.state is _D.ROLLING_BACK:
            return step.name == "rollback"
        if dep.state is _D.VERIFYING:
            return step.name == "verify"
        return step.name.startswith(f"{_wave_name(dep.wave)}:")

    def _push_input(self, dep: DeploymentRecord, w: int, delay_ms: int) -> dict[str, Any]:
        return {"wave": w, "devices": list(dep.waves[w]["devices"]),
                "not_before_ms": self.e.clock() + delay_ms}

    async def run(self, dep: DeploymentRecord, step: StepRecord) -> None:
        kind = step.name.rpartition(":")[2] if ":" in step.name else step.name
        if kind == "push":
            await self._push(dep, step)
        elif kind == "gate":
            await self._gate(dep, step)
        elif kind == "verify":
            self._verify(dep, step)
        elif kind == "rollback":
            await self._rollback(dep, step)
        # approval: nothing to do; only an operator's approve finishes it (hub/rollout.py)

    def _rows(self, dep: DeploymentRecord, wave: int | None = None) -> list[ExecutionRecord]:
        return [d for d in self.e.store.deployments.devices(dep.id)
                if wave is None or d.wave == wave]

    def _commit(self, step: StepRecord) -> Any:
        holder = {"step": step}

        def commit(devices: list[ExecutionRecord], result: Any) -> None:
            holder["step"] = self.e.progress(holder["step"], devices, result)
        return commit

    # -- push -----------------------------------------------------------------------------------
    async def _push(self, dep: DeploymentRecord, step: StepRecord) -> None:
        w = int(step.input["wave"])
        offsets = push_offsets_ms(_wave(dep, w))
        started = int(step.input.get("not_before_ms", step.started_ms))
        now = self.e.clock()
        offline = []
        commit = self._commit(step)
        for ex, offset in zip(self._rows(dep, w), offsets):
            if ex.state is not _X.QUEUED:
                continue
            if now < started + offset:
                return  # paced: the rest on a later pass
            if not self.e.devices.online(ex.device):
                offline.append(ex.device)
                continue
            await self.e.devices.push(dep, ex, step, commit)
            if not self.e.store.deployments.get(dep.id).state.active:
                return  # paused or rolled back meanwhile: the step waits (or is interrupted)
        deadline = self.e.clock() + int(float(dep.strategy["reach_deadline_s"]) * 1000)
        self.e.finish(dep, self._current(dep, step), {"offline": offline},
                      next_step=(f"{_wave_name(w)}:gate", {"wave": w, "deadline_ms": deadline}))

    # -- gate -----------------------------------------------------------------------------------
    async def _gate(self, dep: DeploymentRecord, step: StepRecord) -> None:
        w, deadline = int(step.input["wave"]), int(step.input["deadline_ms"])
        spec = parse_health(dep.health)
        commit = self._commit(step)
        for ex in self._rows(dep, w):
            if ex.state is _X.QUEUED:
                if self.e.devices.online(ex.device):
                    await self.e.devices.push(dep, ex, step, commit)
                elif self.e.clock() >= deadline:
                    commit([moved(ex, _XE.UNREACH, self.e.clock(),
                                  reason="offline past the reach deadline")],
                           {"unreachable": {ex.device: self.e.clock()}})
            elif ex.state in _JUDGED:
                changed = self.e.devices.judge(dep, ex, spec, deadline)
                if changed is not None:
                    commit([changed], {"verdicts": {ex.device: changed.state.value}})
        step = self._current(dep, step)
        rows = self._rows(dep)
        executed = [d for d in rows if d.wave <= w]
        result = decide(dep.waves[w]["kind"], [d for d in rows if d.wave == w], executed,
                        Abort(**dep.strategy["abort"]))
        if result.status == "pending":
            return
        summary = {"gate": result.status, "counts": dict(result.counts)}
        if result.status == "failed":
            self._gate_failed(dep, step, summary, result.failed)
        else:
            self._gate_passed(dep, step, summary, w)

    def _gate_failed(self, dep: DeploymentRecord, step: StepRecord, summary: dict[str, Any],
                     failed: tuple[ExecutionRecord, ...]) -> None:
        first = failed[0]
        why = {"initiated_by": "device" if first.reason == "rollout_fallback" else "gate",
               "gate": first.reason, "devices": [d.device for d in failed],
               "evidence": [{"device": d.device, "gate": d.reason, "evidence": list(d.evidence)}
                            for d in failed], "ts_ms": self.e.clock(), "snapshot": dep.snapshot}
        after = self.e.finish(dep, step, summary, event=_E.GATE_FAILED, rollback=why,
                              next_step=("rollback", {"rollback": why}))
        self.e.audit(dep.id, AuditAction.DEPLOY_ROLLBACK, Outcome.OK, str(first.reason),
                     **why, state=after.state.value)

    def _gate_passed(self, dep: DeploymentRecord, step: StepRecord, summary: dict[str, Any],
                     w: int) -> None:
        last = w + 1 >= len(dep.waves)
        pause_ms = int(float(dep.strategy.get("pause_s", 0)) * 1000)
        if dep.strategy.get("approval") == "manual":
            to = _D.VERIFYING if last else _D.WAVE
            self.e.finish(dep, step, summary, event=_E.AWAIT_APPROVAL, resume_to=to,
                          wave=dep.wave if last else w + 1,
                          next_step=(f"{_wave_name(w)}:approval", {"wave": w, "next": to.value}))
        elif last:
            self.e.finish(dep, step, summary, event=_E.LAST_GATE_PASSED,
                          next_step=("verify", {}))
        else:
            self.e.finish(dep, step, summary, event=_E.GATE_PASSED, wave=w + 1,
                          next_step=(f"wave:{w + 1}:push", self._push_input(dep, w + 1, pause_ms)))

    # -- verify ---------------------------------------------------------------------------------
    def _verify(self, dep: DeploymentRecord, step: StepRecord) -> None:
        spec = parse_health(dep.health)
        commit = self._commit(step)
        for ex in self._rows(dep):
            if ex.state is _X.HEALTHY:
                changed = self.e.devices.judge(dep, ex, spec, None)
                if changed is not None:
                    commit([changed], {"verdicts": {ex.device: changed.state.value}})
        step = self._current(dep, step)
        failed = tuple(d for d in self._rows(dep) if d.state is _X.FAILED and d.reason and
                       d.updated_ms >= step.started_ms)
        if failed:
            self._gate_failed(dep, step, {"gate": "failed"}, failed)
        else:
            self.e.finish(dep, step, {"gate": "passed"}, event=_E.VERIFIED)

    # -- rollback -------------------------------------------------------------------------------
    async def _rollback(self, dep: DeploymentRecord, step: StepRecord) -> None:
        commit = self._commit(step)
        waiting = []
        latched = []
        for ex in self._rows(dep):
            if ex.state in (_X.ROLLED_BACK, _X.SKIPPED):
                continue
            if self.e.devices.latched(ex):
                if not (ex.reason or "").startswith(LATCHED):
                    done = await self.e.devices.restore(dep, ex, commit)
                    commit([done], {"latched": {ex.device: ex.issued}})
                latched.append(ex.device)
                continue
            if ex.state in _TOUCHED and ex.issued is not None and \
                    not self.e.devices.online(ex.device):
                waiting.append(ex.device)  # restored on its return (converge)
                continue
            done = await self.e.devices.restore(dep, ex, commit)
            commit([done], {"restored": {ex.device: done.restore or done.reason or "-"}})
        step = self._current(dep, step)
        self.e.finish(dep, step, {"waiting": waiting, "left_latched": latched},
                      event=_E.ROLLBACK_DONE)

    def _current(self, dep: DeploymentRecord, step: StepRecord) -> StepRecord:
        """The step as stored now (its result grew with each device committed)."""
        return self.e.store.deployments.current_step(dep.id) or step

    # -- devices coming back --------------------------------------------------------------------
    async def converge(self, dep: DeploymentRecord) -> None:
        spec = None
        for ex in self._rows(dep):
            past = ex.wave < dep.wave or dep.state in (_D.COMPLETE, _D.VERIFYING)
            back = dep.state is _D.ROLLED_BACK and ex.state in _TOUCHED and \
                not (ex.reason or "").startswith(LATCHED)
            ahead = dep.state is not _D.ROLLED_BACK and ex.state is _X.UNREACHABLE and past
            if (back or ahead) and self.e.devices.online(ex.device):
                await self._converge_one(dep, ex, back)
            elif dep.state is not _D.ROLLED_BACK and past and ex.state in _JUDGED:
                spec = spec or parse_health(dep.health)  # pushed on its return: judged later
                changed = self.e.devices.judge(dep, ex, spec, None)
                if changed is not None:
                    self.e.store.deployments.write(dep.id, self.e.clock(), devices=[changed])

    async def _converge_one(self, dep: DeploymentRecord, ex: ExecutionRecord, back: bool) -> None:
        """One `converge:<device>` step: its own row, beside the deployment's current step."""
        step = self.e.side_step(dep, f"converge:{ex.device}",
                                {"device": ex.device, "to": "known_good" if back else "snapshot"})
        commit = self._commit(step)
        try:
            if back:
                done = await self.e.devices.restore(dep, ex, commit)
                commit([done], {"restored": {ex.device: done.restore or done.reason or "-"}})
            else:
                done = await self.e.devices.push(dep, ex, step, commit, again=True)
        except RequestRefused as exc:
            self.e.fail(dep.id, self.e.store.deployments.step(dep.id, step.index), str(exc))
            return
        self.e.close_side_step(self.e.store.deployments.step(dep.id, step.index),
                               {"state": done.state.value})
