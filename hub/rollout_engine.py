"""The persisted step engine that carries deployments out (issue 13; the orchestrator-core model).

Theory of operation:
- A deployment runs as a list of steps: `canary:push`, `canary:gate`, `wave:1:push`,
  `wave:1:gate`, ..., `verify`, or `rollback`; `<wave>:approval` waits for a person, and
  `converge:<device>` records what a device that was unreachable got on its return (or a
  device's rollback alone that waited for it: hub/rollout_alone.py). Each step row
  holds its input, result, timestamps, actor and attempts.
- One transaction per batch of devices (hub/store/deployments.py `write`, through `Progress`):
  the devices pushed (or judged, or restored) since the last batch and the step's result with
  them; a step finished, the deployment's transition and the next step's row. A version
  reserved for a push is written ahead at once, before anything is published
  (hub/rollout_push.py); a push's outcome may wait in the batch, since after a crash the
  contract store says it happened and the push is not repeated (hub/rollout_progress.py). So an
  active deployment always has exactly one `running` step, and a hub that restarts (even
  killed -9) finds it in the store and goes on with it: the devices it already pushed are
  rows in `pushed` (or reserved, and PUSHED in the contract store) and are not pushed again
  (hub/rollout_push.py's write-ahead).
- A step that fails (a publish refused, the hub's MQTT side down) is marked `failed` and the
  deployment stays where it is until a retry (or a rollback); a rollback step that fails moves
  the deployment to `failed`.
- Nothing waits inside a step: each pass does what is due now (a paced push, a gate's verdicts,
  a deadline) and returns; the loop runs a pass when woken (an operator's request) or every
  TICK_S. Time is the injected clock's.
- The engine shares the API's loop and store connection, so a pass over a wave yields to the
  loop once it has worked a slice (hub/rollout_progress.py `Slices`): the API waits at most one.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import Any

from contracts.types import EpochMs
from hub.audit import AuditAction, AuditEntry, Outcome, log_entry
from hub.fleet import Fleet
from hub.refusals import RequestRefused
from hub.rollout_alone import AloneRollback
from hub.rollout_converge import Returns
from hub.rollout_flow import Flow
from hub.rollout_gate import HealthJudge
from hub.rollout_progress import merge
from hub.rollout_push import Issuer
from hub.rollout_steps import DeviceSteps
from hub.service import HubService
from hub.states import DeploymentEvent, DeploymentState
from hub.store import HubStore
from hub.store.deployments import DeploymentRecord, ExecutionRecord, StepRecord

log = logging.getLogger("fieldpact.hub.rollout")

TICK_S = 0.25
"""A pass over the active deployments at least this often: a gate's window is seconds to
minutes, a paced wave pushes at most a few devices a second."""

_D, _E = DeploymentState, DeploymentEvent
_CONVERGING = (_D.CANARY, _D.WAVE, _D.VERIFYING, _D.PAUSED, _D.COMPLETE, _D.ROLLED_BACK)


class StepFailed(Exception):
    """A step could not do what is due; the message says why (kept on the step)."""


class RolloutEngine:
    def __init__(self, store: HubStore, service: HubService, fleet: Fleet,
                 live: Mapping[str, Any], clock: Callable[[], EpochMs]) -> None:
        self.store, self.service, self.clock = store, service, clock
        self.devices = DeviceSteps(store, Issuer(service, fleet, clock),
                                   HealthJudge(store, live), live, clock)
        self.flow, self.alone, self.returns = Flow(self), AloneRollback(self), Returns(self)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()  # before the pass: a wake during it (a step that finished with
            try:                # the next one due now, a request) runs the next pass at once
                await self.tick()
            except Exception:  # a bug must not stop every deployment: logged, next pass
                log.exception("rollout_tick_failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    await self._wake.wait()

    async def tick(self) -> None:
        """One pass: every active deployment's running step, then devices coming back."""
        for dep in self.store.deployments.find(states=[s for s in _D if s.active]):
            await self.advance(dep.id)
        for dep in self.store.deployments.converging(_CONVERGING):
            await self.returns.converge(dep)

    async def advance(self, dep_id: str) -> None:
        dep = self.store.deployments.get(dep_id)
        step = self.store.deployments.current_step(dep_id)
        if not dep.state.active or (step is not None and step.status == "failed"):
            return
        if step is None or step.status != "running":
            self.flow.begin(dep, step)
            return
        if not self.flow.belongs(dep, step):  # e.g. an operator rolled back mid-gate
            self.finish(dep, step, {"interrupted": dep.state.value})
            return
        try:
            await self.flow.run(dep, step)
        except (StepFailed, RequestRefused) as exc:
            self.fail(dep_id, step, str(exc))

    # -- the step's lifecycle: each a single transaction ---------------------------------------
    def start(self, dep: DeploymentRecord, name: str, inputs: Mapping[str, Any],
              after: StepRecord | None, *, event: DeploymentEvent | None = None,
              actor: str = "hub", **fields: Any) -> DeploymentRecord:
        step = StepRecord(deployment=dep.id, index=self.store.deployments.next_index(dep.id),
                          name=name,
                          status="running", input=dict(inputs), result={},
                          started_ms=self.clock(), actor=actor)
        return self.store.deployments.write(dep.id, self.clock(), event=event, step=step,
                                            reason=name, **fields)

    def progress(self, step: StepRecord, devices: list[ExecutionRecord],
                 result: Mapping[str, Any]) -> StepRecord:
        """Commit changed devices with the step's result merged in; the step as stored."""
        merged = merge(step.result, result)
        step = replace(step, result=merged)
        self.store.deployments.write(step.deployment, self.clock(), step=step, devices=devices)
        return step

    def finish(self, dep: DeploymentRecord, step: StepRecord, result: Mapping[str, Any], *,
               event: DeploymentEvent | None = None, next_step: tuple[str, Mapping[str, Any]]
               | None = None, status: str = "done", now: EpochMs | None = None,
               **fields: Any) -> DeploymentRecord:
        """The step done, the deployment's event and the next step's row, in one transaction;
        `now`: the time it is done at (a next step's input may be reckoned from it)."""
        now = self.clock() if now is None else now
        done = replace(step, status=status, finished_ms=now, result=merge(step.result, result))
        with self.store.tx():
            after = self.store.deployments.write(dep.id, now, event=event, step=done,
                                                 reason=step.name, **fields)
            if next_step is not None:
                after = self.start(after, next_step[0], next_step[1], done)
        if next_step is not None:
            self.wake()  # the next step's first pass now, not a tick later (a rollback's pushes)
        self.audit(dep.id, AuditAction.DEPLOY_STEP, Outcome.OK, step=step.name,
                   result={k: v for k, v in done.result.items() if k in ("gate", "counts")},
                   state=after.state.value)
        return after

    def side_step(self, dep: DeploymentRecord, name: str,
                  inputs: Mapping[str, Any]) -> StepRecord:
        """A step beside the deployment's own (a device's `converge:`), started."""
        step = StepRecord(deployment=dep.id, index=self.store.deployments.next_index(dep.id),
                          name=name, status="running", input=dict(inputs), result={},
                          started_ms=self.clock(), actor="hub")
        self.store.deployments.write(dep.id, self.clock(), step=step)
        return step

    def close_side_step(self, step: StepRecord, result: Mapping[str, Any]) -> None:
        done = replace(step, status="done", finished_ms=self.clock(),
                       result=merge(step.result, result))
        self.store.deployments.write(step.deployment, self.clock(), step=done)
        self.audit(step.deployment, AuditAction.DEPLOY_STEP, Outcome.OK, step=step.name,
                   result=dict(result))

    def fail(self, dep_id: str, step: StepRecord, why: str) -> None:
        now = self.clock()
        failed = replace(step, status="failed", finished_ms=now,
                         result=merge(step.result, {"error": why[:500]}))
        dep = self.store.deployments.get(dep_id)
        side = step.name.startswith("converge:")
        event = _E.ERROR if dep.state is _D.ROLLING_BACK and not side else None
        self.store.deployments.write(dep_id, now, step=failed, event=event, reason=why[:200])
        self.audit(dep_id, AuditAction.DEPLOY_STEP, Outcome.FAILED, step=step.name,
                   error=why[:500])
        log.warning("rollout_step_failed deployment=%s step=%s error=%s", dep_id, step.name, why)

    def audit(self, dep: str, action: AuditAction, outcome: Outcome, reason: str | None = None,
              *, device: str | None = None, contract: str | None = None,
              **detail: Any) -> None:
        entry = AuditEntry(ts_ms=self.clock(), actor=f"deployment:{dep}", action=action,
                           outcome=outcome, device=device, contract=contract, reason=reason,
                           detail={"deployment": dep, **detail})
        self.store.audit.add(entry)
        log_entry(entry)


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[RolloutEngine]:
    """The engine on the API's loop and store connection while the block runs; API requests
    wake it (app.state.deployments.wake)."""
    service: HubService = app.state.service
    engine = RolloutEngine(service.store, service, app.state.fleet, _LiveView(service),
                           service.clock)
    app.state.deployments.wake = engine.wake
    app.state.rollout_engine = engine
    task = asyncio.create_task(engine.run(), name="hub-rollouts")
    try:
        yield engine
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _LiveView(Mapping[str, Any]):
    """The sync side's live values as they are now (HubService.live is replaced once the MQTT
    side starts, after the app is built)."""

    def __init__(self, service: HubService) -> None:
        self._service = service

    def __getitem__(self, key: str) -> Any:
        return self._service.live[key]

    def __iter__(self) -> Any:
        return iter(self._service.live)

    def __len__(self) -> int:
        return len(self._service.live)
