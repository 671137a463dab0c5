"""A wave's gate, from each device's health verdict (interface I3) — the rules, pure.

Rules:
- A device's verdict comes from the HealthJudge (hub/health.py, interface I3): evidence from its
  own journal only.
- The canary gate fails at the first failed canary; a wave's gate fails once the deployment's
  failures cross the abort threshold (contracts/rollout_strategy.py `aborts`, counted over every
  device executed so far); any device that journaled `rollout_fallback` (interface I2: it fell
  back by itself) fails the gate whatever the threshold.
- A gate passes once every device of its wave is settled (healthy, failed under the threshold,
  unreachable past the reach deadline, skipped) and it has not failed.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts.rollout_strategy import Abort, aborts
from hub.states import ExecutionState
from hub.store.deployments import ExecutionRecord

from contracts.rollout_health import Evidence, Health, HealthSpec, Verdict, parse_health
from hub.health import HealthJudge

__all__ = ["Evidence", "GateResult", "Health", "HealthJudge", "HealthSpec", "Verdict", "decide",
           "evidence_view", "parse_health"]

FALLBACK_GATE = "rollout_fallback"


@dataclass(frozen=True, kw_only=True)
class GateResult:
    status: str  # pending | passed | failed
    counts: Mapping[str, int]
    failed: tuple[ExecutionRecord, ...] = ()


def evidence_view(evidence: Iterable[Any]) -> list[dict[str, Any]]:
    return [{"what": e.what, "seq": e.seq, "ts_ms": e.ts_ms, "value": _plain(e.value)}
            for e in evidence]


def _plain(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return str(v)


def counts(devices: Iterable[ExecutionRecord]) -> dict[str, int]:
    out = {"healthy": 0, "failed": 0, "unreachable": 0, "skipped": 0}
    for d in devices:
        key = d.state.value if d.state.value in out else None
        if key is not None:
            out[key] += 1
    return out


def decide(kind: str, wave: list[ExecutionRecord], executed: list[ExecutionRecord],
           abort: Abort) -> GateResult:
    """The gate of `wave` (`kind` canary or wave), with `executed` every device of the deployment
    so far (for the abort threshold)."""
    mine = counts(wave)
    failed = tuple(d for d in wave if d.state is ExecutionState.FAILED)
    fell_back = any(d.reason == FALLBACK_GATE for d in failed)
    total = counts(executed)
    if failed and (kind == "canary" or fell_back or
                   aborts(abort, total["healthy"], total["failed"])):
        return GateResult(status="failed", counts=mine, failed=failed)
    if all(d.state.settled for d in wave):
        return GateResult(status="passed", counts=mine, failed=failed)
    return GateResult(status="pending", counts=mine, failed=failed)
