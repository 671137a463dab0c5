"""Devices coming back to a deployment (issue 13: "when they come back they get what the
deployment says *then*"), a pass beside the deployment's own steps (hub/rollout_engine.py).

Rules:
- A device that was unreachable and is online again gets what the deployment says now: the
  snapshot while it goes on or once complete, its known-good contract once rolled back (but one
  latched in safe state: left for an operator). Each is one `converge:<device>` step of its own.
- One pushed on its return is judged as its wave's devices were, against a verify deadline from
  its own push; one that fails is rolled back alone (hub/rollout_alone.py), as is one whose
  rollback alone waited for it to come back.
- A device's contracts are rows of their own (hub/rollout.py): one that fails takes the
  device's others back with it (hub/rollout_alone.py `siblings`); the rest of that pass skips
  the device (its rows as read before are stale).
- A restore or push refused fails that `converge:` step only, never the deployment's own.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from hub.refusals import RequestRefused
from hub.rollout_alone import pending, resolved
from hub.rollout_flow import JUDGED, TOUCHED, verify_deadline
from hub.rollout_gate import HealthSpec, parse_health
from hub.rollout_progress import Progress, Slices
from hub.rollout_steps import LATCHED
from hub.states import DeploymentState, ExecutionState
from hub.store.deployments import DeploymentRecord, ExecutionRecord

if TYPE_CHECKING:
    from hub.rollout_engine import RolloutEngine

_D, _X = DeploymentState, ExecutionState


class Returns:
    def __init__(self, engine: RolloutEngine) -> None:
        self.e = engine

    async def converge(self, dep: DeploymentRecord) -> None:
        spec: HealthSpec | None = None
        slices = Slices()
        gone: set[str] = set()  # devices rolled back alone this pass (with all their contracts)
        for ex in self.e.store.deployments.devices(dep.id):
            await slices.yielded()
            if ex.device in gone:
                continue  # its row here is from before that rollback
            going = dep.state is not _D.ROLLED_BACK
            past = ex.wave < dep.wave or dep.state in (_D.COMPLETE, _D.VERIFYING)
            back = not going and ex.state in TOUCHED and \
                not (ex.reason or "").startswith(LATCHED)
            ahead = going and ex.state is _X.UNREACHABLE and past
            alone = going and ex.rollback is not None and pending(ex)
            if (back or ahead or alone) and self.e.devices.online(ex.device):
                if going and (back or alone):
                    gone.add(ex.device)
                await self._converge_one(dep, ex, back or alone)
            elif going and past and ex.state in JUDGED:
                spec = spec or parse_health(dep.health)  # pushed on its return: judged later
                if await self._judge(dep, ex, spec):
                    gone.add(ex.device)

    async def _judge(self, dep: DeploymentRecord, ex: ExecutionRecord, spec: HealthSpec) -> bool:
        """Judged; True when it failed and was rolled back alone (its other contracts too)."""
        reach_ms = int(float(dep.strategy["reach_deadline_s"]) * 1000)
        verify_by = verify_deadline(dep, (ex.pushed_ms or self.e.clock()) + reach_ms)
        changed = self.e.devices.judge(dep, ex, spec, None, verify_by)
        if changed is None:
            return False
        if changed.state is _X.FAILED:  # failed on its return: back alone, as in its gate
            await self._converge_one(dep, changed, True)
            return True
        self.e.store.deployments.write(dep.id, self.e.clock(), devices=[changed])
        return False

    async def _converge_one(self, dep: DeploymentRecord, ex: ExecutionRecord, back: bool) -> None:
        """One `converge:<device>` step: its own row, beside the deployment's current step."""
        step = self.e.side_step(dep, f"converge:{ex.device}",
                                {"device": ex.device, "contract": ex.contract,
                                 "to": "known_good" if back else "snapshot"})
        progress = Progress(self.e, step)
        try:
            if back and dep.state is not _D.ROLLED_BACK:  # with its device's other contracts
                others = [d for d in self.e.store.deployments.devices(dep.id)
                          if d.device == ex.device and d.contract != ex.contract]
                handled = await self.e.alone.roll_back(dep, [ex, *others], step.name, progress)
                done = next((d for d in handled if d.key == ex.key), ex)
            elif back:
                done = resolved(ex, await self.e.devices.restore(dep, ex, progress))
                progress([done], {"restored": {ex.label: done.restore or done.reason or "-"}})
            else:
                done = await self.e.devices.push(dep, ex, step, progress, again=True)
        except RequestRefused as exc:
            progress.flush()
            self.e.fail(dep.id, self.e.store.deployments.step(dep.id, step.index), str(exc))
            return
        self.e.close_side_step(progress.flush(), {"state": done.state.value})
