"""A wave's gate, from each device's health verdict (interface I3) — the rules, pure.

Rules:
- A device's verdict comes from the HealthJudge (hub/health.py, interface I3): evidence from its
  own journal only.
- The canary gate fails at the first failed canary; a wave's gate fails once the deployment's
  failures cross the abort threshold (contracts/rollout_strategy.py `aborts`, counted over every
  device executed so far); any device that journaled `rollout_fallback` (interface I2: it fell
  back by itself) fails the gate whatever the threshold.
- A device still unproven at the gate's verify deadline (hub/rollout_flow.py) fails as
  `unproven`, its evidence what could not be proven: the journal gap's seqs, or that no entry
  at or after the window's end came (`unproven`); it counts as any failed device.
- A device that failed its gate and was rolled back alone (hub/rollout_alone.py: under the
  threshold) still counts as failed, here and in the abort threshold of every later gate.
- A device runs each contract the snapshot gives it (one row each): it counts once, as failed
  if any of its contracts failed its gate (`device_state`), in its gate and the abort threshold.
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

__all__ = ["UNPROVEN", "Evidence", "GateResult", "Health", "HealthJudge", "HealthSpec", "Verdict",
           "decide", "evidence_view", "parse_health", "unproven"]

FALLBACK_GATE = "rollout_fallback"
UNPROVEN = "unproven"
"""The gate a device fails when its health is still unproven at the verify deadline."""
NO_WINDOW_END = "no entry at or after the window's end"


@dataclass(frozen=True, kw_only=True)
class GateResult:
    status: str  # pending | passed | failed
    counts: Mapping[str, int]
    failed: tuple[ExecutionRecord, ...] = ()


def evidence_view(evidence: Iterable[Any]) -> list[dict[str, Any]]:
    return [{"what": e.what, "seq": e.seq, "ts_ms": e.ts_ms, "value": _plain(e.value)}
            for e in evidence]


def unproven(verdict: Verdict, verify_by_ms: int) -> tuple[Evidence, ...]:
    """A PENDING verdict's evidence as the reason it stays unproven: what was proven (the accept,
    the boot, the cycles), then the journal gap inside the window (its seqs) or that no entry at
    or after the window's end came, or what else was awaited; last the deadline passed."""
    kept = tuple(e for e in verdict.evidence if e.what != "window")
    gap = any(e.what == "journal_gap" for e in kept)
    window = next((e for e in verdict.evidence if e.what == "window"), None)
    if gap:
        missing: tuple[Evidence, ...] = ()
    elif window is not None:
        missing = (Evidence(what="window", ts_ms=window.ts_ms, value=NO_WINDOW_END),)
    else:
        missing = (Evidence(what=str(verdict.gate or "window"),
                            value=f"no {verdict.gate or 'proof'} by the verify deadline"),)
    return (*kept, *missing, Evidence(what="verify_deadline", ts_ms=verify_by_ms))


def _plain(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return str(v)


def failed_gate(d: ExecutionRecord) -> bool:
    """Whether `d` failed its gate: failed, or rolled back alone after failing it."""
    return d.state is ExecutionState.FAILED or \
        (d.state is ExecutionState.ROLLED_BACK and d.rollback is not None)


def device_state(rows: Iterable[ExecutionRecord]) -> str | None:
    """A device's count over its rows (one per contract): failed if any contract failed its
    gate; healthy once every contract is (or was skipped); else unreachable if one is; skipped
    if all are; None while one is still pending (or rolled back with the deployment)."""
    mine = list(rows)
    if any(failed_gate(d) for d in mine):
        return "failed"
    states = {d.state for d in mine}
    if ExecutionState.HEALTHY in states and states <= {ExecutionState.HEALTHY,
                                                        ExecutionState.SKIPPED}:
        return "healthy"
    if ExecutionState.UNREACHABLE in states:
        return "unreachable"
    return "skipped" if states == {ExecutionState.SKIPPED} else None


def counts(devices: Iterable[ExecutionRecord]) -> dict[str, int]:
    """Devices (not rows) healthy, failed, unreachable and skipped (`device_state`)."""
    out = {"healthy": 0, "failed": 0, "unreachable": 0, "skipped": 0}
    rows: dict[str, list[ExecutionRecord]] = {}
    for d in devices:
        rows.setdefault(d.device, []).append(d)
    for mine in rows.values():
        key = device_state(mine)
        if key is not None:
            out[key] += 1
    return out


def decide(kind: str, wave: list[ExecutionRecord], executed: list[ExecutionRecord],
           abort: Abort) -> GateResult:
    """The gate of `wave` (`kind` canary or wave), with `executed` every device of the deployment
    so far (for the abort threshold)."""
    mine = counts(wave)
    failed = tuple(d for d in wave if failed_gate(d))
    fell_back = any(d.reason == FALLBACK_GATE for d in failed)
    total = counts(executed)
    if failed and (kind == "canary" or fell_back or
                   aborts(abort, total["healthy"], total["failed"])):
        return GateResult(status="failed", counts=mine, failed=failed)
    if all(d.state.settled for d in wave):
        return GateResult(status="passed", counts=mine, failed=failed)
    return GateResult(status="pending", counts=mine, failed=failed)
