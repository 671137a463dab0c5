"""A step's progress as the engine commits it, and the slices its passes run in (issue 13).

Rules:
- A step's changed devices and its result are written together, in one transaction per BATCH
  devices (hub/store/deployments.py `write`): a step's record commits with its effect. A
  write-ahead (a version reserved before a push) is written at once (`durable`).
- What waits in a batch is only what a resume finds again: a push's outcome (the contract store
  says it was published; hub/rollout_push.py does not publish it twice), a verdict (judged again
  from the same journal). So a crash loses no effect, only the record of one, recomputed.
- The engine shares the API's loop and store connection: a pass yields to the loop once it has
  worked SLICE_S since it last did, and never holds a transaction open across a yield (the
  API's writes on the same connection would join it).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hub.store.deployments import ExecutionRecord, StepRecord

if TYPE_CHECKING:
    from hub.rollout_engine import RolloutEngine

SLICE_S = 0.005
"""Engine work between two yields to the loop: the API's requests wait at most about this long
on a pass (a device judged costs 1-4 ms, so a slice is a few devices; a yield costs ~20 us)."""
BATCH = 50
"""Devices a step commits together: one fsync per batch, not several per device (a commit costs
~1-5 ms on this host; a wave of 250 pushed was ~1,500 commits before)."""


class Slices:
    """Yields to the loop once SLICE_S of work ran since the last yield (wall time: a budget for
    the API's latency, not a decision of the engine's)."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    async def yielded(self) -> bool:
        """True when it yielded (whoever holds a record read before should read it again)."""
        if time.perf_counter() - self._t0 < SLICE_S:
            return False
        await asyncio.sleep(0)
        self._t0 = time.perf_counter()
        return True


class Progress:
    """A step's changed devices and result, committed together once BATCH devices are waiting,
    at once when `durable` (a write-ahead), or by `flush` (before the step is read back, before
    it finishes, and whatever happens at the end of a pass)."""

    def __init__(self, engine: RolloutEngine, step: StepRecord) -> None:
        self.e, self.step = engine, step
        self._devices: dict[tuple[str, str], ExecutionRecord] = {}
        self._result: dict[str, Any] = {}

    def __call__(self, devices: list[ExecutionRecord], result: Mapping[str, Any], *,
                 durable: bool = False) -> None:
        self._devices.update((d.key, d) for d in devices)
        self._result = merge(self._result, result)
        if durable or len(self._devices) >= BATCH:
            self.flush()

    def flush(self) -> StepRecord:
        """Write what waits (one transaction); the step as stored."""
        if self._devices or self._result:
            devices, result = list(self._devices.values()), self._result
            self._devices, self._result = {}, {}
            self.step = self.e.progress(self.step, devices, result)
        return self.step


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """`a` with `b`; dict values merged one level down (per-device maps)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = {**out[k], **v} if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) \
            else v
    return out
