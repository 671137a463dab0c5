"""The rollout engine runs a step that is due now at once, not a tick later: a step that
finishes with its next one (a failed gate's rollback) wakes the loop, and a wake that comes
during a pass runs another pass right after it (the loop used to clear it after the pass)."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

import hub.rollout_engine as rollout_engine
from hub.fleet import Fleet
from hub.registry import DeviceRegistry
from hub.rollout_engine import RolloutEngine
from hub.service import HubService
from hub.states import DeploymentEvent
from hub.store import HubStore
from tests.hub.test_deployments_store import _deployment
from tests.waiting import eventually


class _Passes(RolloutEngine):
    """The real loop (`run`) over passes that only count, the first waking it as finish() does."""

    def __init__(self) -> None:  # noqa: D107 - the loop needs nothing else
        self._wake = asyncio.Event()
        self.passes = 0

    async def tick(self) -> None:
        self.passes += 1
        if self.passes == 1:
            self.wake()


async def test_a_wake_during_a_pass_runs_the_next_pass_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollout_engine, "TICK_S", 60.0)  # only a wake can bring a second pass
    engine = _Passes()
    task = asyncio.create_task(engine.run())
    try:
        await eventually(lambda: engine.passes >= 2, 5, "a second pass, woken during the first")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_step_finished_with_its_next_step_wakes_the_engine(
        store: HubStore, service: HubService, registry: DeviceRegistry, clock: Any) -> None:
    engine = RolloutEngine(store, service, Fleet(store, registry, clock), {}, clock)
    dep = _deployment(store)
    dep = engine.start(dep, "canary:push", {"wave": 0}, None,
                       event=DeploymentEvent.START)
    step = store.deployments.current_step(dep.id)
    assert step is not None and not engine._wake.is_set()
    engine.finish(dep, step, {"gate": "x"}, next_step=("canary:gate", {"wave": 0}))
    assert engine._wake.is_set()  # the gate's first pass is due now
    engine._wake.clear()
    step = store.deployments.current_step(dep.id)
    assert step is not None and step.name == "canary:gate"
    engine.finish(dep, step, {}, status="done")
    assert not engine._wake.is_set()  # nothing due after a last step
