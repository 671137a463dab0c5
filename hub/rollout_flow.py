"""The deployment's steps in order, and what each does on a pass (hub/rollout_engine.py runs them).

    planned --start--> canary:push -> canary:gate --> [approval] --> wave:1:push -> wave:1:gate
      --> ... --> verify --> complete;  a failed gate --> rollback --> rolled_back

- push: the wave's online devices, paced at the wave's rate (contracts/rollout_strategy.py), the
  first no earlier than the strategy's pause_s after the previous gate passed (`not_before_ms`
  in the step's input); the offline ones stay queued for the gate. The step is done when every device was pushed or found
  offline.
- gate: until the wave's reach deadline a queued device that came online is pushed; each pushed
  device is judged; the gate's rules are hub/rollout_gate.py's. Failed: the typed rollback reason
  (which gate, which devices, their evidence) is stored with the transition.
- verify: every healthy device judged once more (a fallback that arrived late fails it).
- rollback: every touched, online device restored (hub/rollout_steps.py), but one latched in
  its safe state, which is left there for an operator; offline ones are restored when they come
  back (converge).
- a device that failed a gate that did not fail (under the abort threshold) is rolled back alone
  (hub/rollout_alone.py) and the gate goes on.
- converge (hub/rollout_converge.py): a device that was unreachable and is online again gets what
  the deployment says now.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from contracts.rollout_spec import DEFAULT_WINDOW_S
from contracts.rollout_strategy import DEFAULT_VERIFY_MARGIN_S, Abort, Wave, push_offsets_ms
from hub.audit import AuditAction, Outcome
from hub.rollout_alone import resolved
from hub.rollout_progress import BATCH, Progress, Slices
from hub.rollout_gate import HealthSpec, decide, parse_health
from hub.rollout_steps import LATCHED, moved
from hub.states import DeploymentEvent, DeploymentState, ExecutionEvent, ExecutionState
from hub.store.deployments import DeploymentRecord, ExecutionRecord, StepRecord

if TYPE_CHECKING:
    from hub.rollout_engine import RolloutEngine

_D, _E, _X, _XE = DeploymentState, DeploymentEvent, ExecutionState, ExecutionEvent
TOUCHED = frozenset({_X.PUSHED, _X.ACCEPTED, _X.RUNNING, _X.HEALTHY, _X.FAILED, _X.UNREACHABLE})
JUDGED = frozenset({_X.PUSHED, _X.ACCEPTED, _X.RUNNING})


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

    def _push_input(self, dep: DeploymentRecord, w: int, delay_ms: int,
                    now: int | None = None) -> dict[str, Any]:
        """A wave's push, due `delay_ms` after `now`: stored with the step, so a hub restarted
        meanwhile waits out the same time (never a shorter one, never a push again)."""
        return {"wave": w, "devices": list(dep.waves[w]["devices"]),
                "not_before_ms": (self.e.clock() if now is None else now) + delay_ms}

    async def run(self, dep: DeploymentRecord, step: StepRecord) -> None:
        kind = step.name.rpartition(":")[2] if ":" in step.name else step.name
        if kind == "push":
            await self._push(dep, step)
        elif kind == "gate":
            await self._gate(dep, step)
        elif kind == "verify":
            await self._verify(dep, step)
        elif kind == "rollback":
            await self._rollback(dep, step)
        # approval: nothing to do; only an operator's approve finishes it (hub/rollout.py)

    def _rows(self, dep: DeploymentRecord, wave: int | None = None) -> list[ExecutionRecord]:
        return [d for d in self.e.store.deployments.devices(dep.id)
                if wave is None or d.wave == wave]

    # -- push -----------------------------------------------------------------------------------
    async def _push(self, dep: DeploymentRecord, step: StepRecord) -> None:
        w = int(step.input["wave"])
        wave = _wave(dep, w)  # paced per device: each of its contracts is due with it
        offsets = dict(zip(wave.devices, push_offsets_ms(wave)))
        started = int(step.input.get("not_before_ms", step.started_ms))
        now = self.e.clock()
        queued = [(ex, offsets.get(ex.device, 0)) for ex in self._rows(dep, w)
                  if ex.state is _X.QUEUED]
        due = [ex for ex, off in queued if now >= started + off]  # paced: the rest later
        offline = _unique(ex.device for ex in due if not self.e.devices.online(ex.device))
        online = [ex for ex in due if ex.device not in offline]
        progress, slices = Progress(self.e, step), Slices()
        try:
            for start in range(0, len(online), BATCH):
                for ex in self.e.devices.reserve(online[start:start + BATCH], progress):
                    await self.e.devices.push(dep, ex, step, progress)
                    await slices.yielded()
                    if not self.e.store.deployments.get(dep.id).state.active:
                        return  # paused or rolled back meanwhile: the step waits (or is interrupted)
        finally:
            progress.flush()
        if len(due) < len(queued):
            return
        deadline = self.e.clock() + int(float(dep.strategy["reach_deadline_s"]) * 1000)
        self.e.finish(dep, self._current(dep, step), {"offline": offline},
                      next_step=(f"{_wave_name(w)}:gate", {
                          "wave": w, "deadline_ms": deadline,
                          "verify_by_ms": verify_deadline(dep, deadline)}))

    # -- gate -----------------------------------------------------------------------------------
    async def _gate(self, dep: DeploymentRecord, step: StepRecord) -> None:
        w, deadline = int(step.input["wave"]), int(step.input["deadline_ms"])
        spec = parse_health(dep.health)
        verify_by = int(step.input.get("verify_by_ms") or verify_deadline(dep, deadline))
        progress, slices = Progress(self.e, step), Slices()
        try:
            for ex in self._rows(dep, w):
                if await slices.yielded() and self._moved_on(dep):
                    return  # an operator's request meanwhile: the next pass sees it
                await self._gate_one(dep, ex, step, progress, spec, deadline, verify_by)
        finally:
            step = progress.flush()
        rows = self._rows(dep)
        executed = [d for d in rows if d.wave <= w]
        result = decide(dep.waves[w]["kind"], [d for d in rows if d.wave == w], executed,
                        Abort(**dep.strategy["abort"]))
        if result.status == "failed":
            self._gate_failed(dep, step, {"gate": "failed", "counts": dict(result.counts)},
                              result.failed)
            return
        step = await self._alone(dep, step, [d for d in rows if d.wave == w])
        if result.status == "passed":
            self._gate_passed(dep, step, {"gate": "passed", "counts": dict(result.counts)}, w)

    async def _alone(self, dep: DeploymentRecord, step: StepRecord,
                     wave: list[ExecutionRecord]) -> StepRecord:
        """The wave's failed devices rolled back alone, the gate not failed (the step after)."""
        progress = Progress(self.e, step)
        try:
            await self.e.alone.roll_back(dep, wave, step.name, progress)
        finally:
            step = progress.flush()
        return step

    async def _gate_one(self, dep: DeploymentRecord, ex: ExecutionRecord, step: StepRecord,
                        progress: Progress, spec: HealthSpec, deadline: int,
                        verify_by: int) -> None:
        if ex.state is _X.QUEUED:
            if self.e.devices.online(ex.device):
                await self.e.devices.push(dep, ex, step, progress)
            elif self.e.clock() >= deadline:
                progress([moved(ex, _XE.UNREACH, self.e.clock(),
                                reason="offline past the reach deadline")],
                         {"unreachable": {ex.label: self.e.clock()}})
        elif ex.state in JUDGED:
            changed = self.e.devices.judge(dep, ex, spec, deadline, verify_by)
            if changed is not None:
                progress([changed], {"verdicts": {ex.label: changed.state.value}})

    def _moved_on(self, dep: DeploymentRecord) -> bool:
        return self.e.store.deployments.get(dep.id).state is not dep.state

    def _gate_failed(self, dep: DeploymentRecord, step: StepRecord, summary: dict[str, Any],
                     failed: tuple[ExecutionRecord, ...]) -> None:
        first = failed[0]
        why: dict[str, Any] = {
            "initiated_by": "device" if first.reason == "rollout_fallback" else "gate",
            "gate": first.reason, "devices": _unique(d.device for d in failed),
            "evidence": [{"device": d.device, "contract": d.contract, "gate": d.reason,
                          "evidence": list(d.evidence)} for d in failed],
            "ts_ms": self.e.clock(), "snapshot": dep.snapshot}
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
        else:  # pause_s from the gate's pass (its finished_ms) to the next wave's first push
            now = self.e.clock()
            self.e.finish(dep, step, summary, event=_E.GATE_PASSED, wave=w + 1, now=now,
                          next_step=(f"wave:{w + 1}:push",
                                     self._push_input(dep, w + 1, pause_ms, now)))

    # -- verify ---------------------------------------------------------------------------------
    async def _verify(self, dep: DeploymentRecord, step: StepRecord) -> None:
        spec = parse_health(dep.health)
        progress, slices = Progress(self.e, step), Slices()
        try:
            for ex in self._rows(dep):
                if await slices.yielded() and self._moved_on(dep):
                    return
                if ex.state is _X.HEALTHY:
                    changed = self.e.devices.judge(dep, ex, spec, None)
                    if changed is not None:
                        progress([changed], {"verdicts": {ex.label: changed.state.value}})
        finally:
            step = progress.flush()
        failed = tuple(d for d in self._rows(dep) if d.state is _X.FAILED and d.reason and
                       d.updated_ms >= step.started_ms and d.rollback is None)
        if failed:
            self._gate_failed(dep, step, {"gate": "failed"}, failed)
        else:
            self.e.finish(dep, step, {"gate": "passed"}, event=_E.VERIFIED)

    # -- rollback -------------------------------------------------------------------------------
    async def _rollback(self, dep: DeploymentRecord, step: StepRecord) -> None:
        progress, slices = Progress(self.e, step), Slices()
        waiting: list[str] = []
        latched: list[str] = []
        try:
            for ex in self._rows(dep):
                await slices.yielded()  # nothing an operator asks stops a rollback
                await self._rollback_one(dep, ex, progress, waiting, latched)
        finally:
            step = progress.flush()
        self.e.finish(dep, step, {"waiting": waiting, "left_latched": latched},
                      event=_E.ROLLBACK_DONE)

    async def _rollback_one(self, dep: DeploymentRecord, ex: ExecutionRecord, progress: Progress,
                            waiting: list[str], latched: list[str]) -> None:
        if ex.state in (_X.ROLLED_BACK, _X.SKIPPED):
            return
        if self.e.devices.latched(ex):
            if not (ex.reason or "").startswith(LATCHED):
                done = resolved(ex, await self.e.devices.restore(dep, ex, progress))
                progress([done], {"latched": {ex.label: ex.issued}})
            if ex.device not in latched:
                latched.append(ex.device)
            return
        if ex.state in TOUCHED and ex.issued is not None and \
                not self.e.devices.online(ex.device):
            if ex.device not in waiting:
                waiting.append(ex.device)  # restored on its return (converge)
            return
        done = resolved(ex, await self.e.devices.restore(dep, ex, progress))
        progress([done], {"restored": {ex.label: done.restore or done.reason or "-"}})

    def _current(self, dep: DeploymentRecord, step: StepRecord) -> StepRecord:
        """The step as stored now (its result grew with each device committed)."""
        return self.e.store.deployments.current_step(dep.id) or step


def _unique(devices: Iterable[str]) -> list[str]:
    """Device ids in order, each once (a device has a row per contract)."""
    return list(dict.fromkeys(devices))


def verify_deadline(dep: DeploymentRecord, reach_deadline_ms: int) -> int:
    """A gate's verify deadline: past the reach deadline, the health window and the strategy's
    margin, a device still unproven fails as `unproven` (contracts/rollout_strategy.py)."""
    window_ms = int(float(dep.health.get("window_s", DEFAULT_WINDOW_S)) * 1000)
    margin = float(dep.strategy.get("verify_margin_s", DEFAULT_VERIFY_MARGIN_S))
    return reach_deadline_ms + window_ms + int(margin * 1000)
