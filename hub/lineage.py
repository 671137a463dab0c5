"""Retry budgets per contract lineage, backoff, settle time and the re-issue source — pure.

Rules (DESIGN invariant 9: automation never undoes a safety latch):
- A *lineage* is a contract version an operator submitted plus every version the planner
  re-issued from it, transitively. Its key is the operator's version id ("tank-fill@3"); a replan
  inherits the key of the version it was built from. The store persists it with each contract and
  keeps one budget row per lineage.
- Every automatic re-issue (live trip, reconciliation, refusal, failure: whatever triggered it)
  counts against the lineage's one budget, and the next one is allowed only after a backoff that
  doubles with each re-issue (`RetryConfig`), persisted as `next_allowed_ms` so a hub restart
  does not reset it.
- After a trip, an explicit retry policy also needs the agent to have reported healthy inputs for
  the settle time (`inputs_healthy` on each telemetry message, the time it became healthy kept by
  the sync side).
- A re-issue is built from the version the device runs, and never from a version older than the
  newest one that is active at the hub (`source_version`): a stale record must not roll a device
  back to an old contract under a new version number.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from contracts.schema import Contract
from contracts.types import EpochMs, Value
from hub.policy import RetryConfig


@dataclass(frozen=True, kw_only=True)
class Budget:
    """How many automatic re-issues a lineage has had and when the next one may happen."""

    lineage: str
    retries: int = 0
    last_retry_ms: EpochMs | None = None
    next_allowed_ms: EpochMs | None = None


def backoff_ms(retries_done: int, cfg: RetryConfig) -> int:
    """The wait after the `retries_done`-th re-issue: backoff, doubling, capped."""
    if retries_done <= 0:
        return 0
    return min(cfg.backoff_max_ms, cfg.backoff_ms << min(retries_done - 1, 32))


def after_retry(budget: Budget, now_ms: EpochMs, cfg: RetryConfig) -> Budget:
    """The budget once one more re-issue went out at `now_ms`."""
    n = budget.retries + 1
    return replace(budget, retries=n, last_retry_ms=now_ms,
                   next_allowed_ms=now_ms + backoff_ms(n, cfg))


def wait_reason(budget: Budget, now_ms: EpochMs, *, trip: bool,
                healthy_since_ms: EpochMs | None, cfg: RetryConfig) -> str | None:
    """Why an allowed re-issue must wait, or None if it may go now."""
    if budget.next_allowed_ms is not None and now_ms < budget.next_allowed_ms:
        return f"backoff: next automatic re-issue at {budget.next_allowed_ms} " \
               f"({(budget.next_allowed_ms - now_ms) // 1000} s)"
    if trip and healthy_since_ms is None:
        return "the agent has not reported healthy inputs since the trip"
    if trip and healthy_since_ms is not None and now_ms - healthy_since_ms < cfg.settle_ms:
        return f"inputs healthy for {(now_ms - healthy_since_ms) // 1000} s of " \
               f"{cfg.settle_ms // 1000} s settle time"
    return None


def inputs_healthy(contract: Contract, values: Mapping[str, Value],
                   read_ms: Mapping[str, int], ts_ms: EpochMs) -> bool:
    """Whether a telemetry message shows every read point good: present (telemetry carries only
    good reads), within its range, and read recently enough (`read_ms`, when the agent sends it)."""
    for p in contract.points:
        if p.direction.value != "read":
            continue
        if p.name not in values:
            return False
        v = values[p.name]
        if p.range is not None and not isinstance(v, bool) and not p.range[0] <= v <= p.range[1]:
            return False
        read = read_ms.get(p.name)
        if read is not None and p.stale_after_ms is not None and ts_ms - read > p.stale_after_ms:
            return False
    return True


def source_version(*, record: int, running: int | None, active: int | None) -> int | None:
    """Which version of a contract to re-issue from, or None to re-issue nothing.

    `record` is the version the trigger named, `running` the version the device reports it runs
    (None when it runs another contract or is unknown), `active` the newest version claiming the
    device's points at the hub. The source is the newest of the three, and only if the device runs
    it or it is the version the trigger named: anything else would be a guess."""
    newest = max(v for v in (record, running, active) if v is not None)
    if running == newest or (record == newest and running in (None, record)):
        return newest
    return None
