"""Reconciliation — pure: what the device actually did against what the hub projected.

When a device's journal has caught up after it was offline, its actual history (folded from the
journal by hub/actual_history.py) replaces the projection, and the difference is measured on five
axes, each compared with the contract's `tolerance`:
  step     the step the device is in now vs the projected one;
  timing   for each step both entered, |actual - projected| entry time (tolerance.timing_s);
  outputs  final commanded outputs (exact for bools, half a scale step for numbers);
  values   modelled inputs at the end (tolerance.values per point);
  faults   guard trips, adapter faults and refusals (the projection has none);
  outcome  the contract's mode (running, completed, failed, safe, ...).
The report also keeps the outage's value trajectories, projected and actual, sampled for the
fleet view's chart (hub/trajectory.py; the fold samples as it goes). A divergent report carries a
failure category for the planner's policy (runtime, adapters, network, config, trip). A device that
ended the outage latched in safe_state is `trip`, whatever tripped it: its default policy is hold,
because a re-issue would clear the latch.

The fold's names (Actual, StepMark, actual_from_entries, fold_entries, fold_rows) are re-exported
here, where the sync side and the tests have always imported them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.chain import Entry, EntryKind
from contracts.engine_state import EventKind, Mode
from contracts.guards import TripReason
from contracts.projection import Projection
from contracts.schema import Contract
from contracts.types import EpochMs, Value
from hub.actual_history import Actual, StepMark, actual_from_entries, fold_entries, fold_rows
from hub.policy import FailureCategory as Category
from hub.trajectory import trajectory

__all__ = ["Actual", "Report", "StepMark", "actual_from_entries", "fold_entries", "fold_rows",
           "reconcile", "reconcile_actual"]


_TRIP_CATEGORY = {
    TripReason.STALE: Category.ADAPTERS, TripReason.BAD_QUALITY: Category.ADAPTERS,
    TripReason.OUT_OF_RANGE: Category.ADAPTERS,
    "frozen": Category.ADAPTERS, "spike": Category.ADAPTERS,  # the agent's reading guards' reasons
    TripReason.AUTONOMY: Category.NETWORK, TripReason.ENGINE_ERROR: Category.RUNTIME,
    TripReason.INTERLOCK: Category.RUNTIME,  # another contract's trip, decided on the agent
}


@dataclass(frozen=True, kw_only=True)
class Report:
    contract: str
    version: int
    from_ms: EpochMs
    to_ms: EpochMs
    confidence: float
    step_projected: str | None
    step_actual: str | None
    outcome_projected: str | None
    outcome_actual: str | None
    timing: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]
    values: tuple[dict[str, Any], ...]
    faults: tuple[dict[str, Any], ...]
    divergent: bool
    reasons: tuple[str, ...]
    category: Category | None
    actual_step_index: int | None
    trajectory: tuple[dict[str, Any], ...] = ()  # projected and actual values (hub/trajectory.py)

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["category"] = self.category.value if self.category else None
        d["timing"], d["outputs"] = list(self.timing), list(self.outputs)
        d["values"], d["faults"], d["reasons"] = list(self.values), list(self.faults), list(self.reasons)
        d["trajectory"] = list(self.trajectory)
        return d


def _projected_at(projection: Projection, to_ms: EpochMs) -> Any:
    last = projection.points[0] if projection.points else None
    for p in projection.points:
        if p.ts_ms > to_ms:
            break
        last = p
    return last


def _projected_steps(projection: Projection, to_ms: EpochMs) -> list[StepMark]:
    return [StepMark(step=str(e.get("step")), ts_ms=e.ts_ms) for e in projection.transitions
            if e.kind is EventKind.STEP_ENTERED and e.ts_ms <= to_ms]


def _timing(contract: Contract, proj: list[StepMark], act: list[StepMark]) -> list[dict[str, Any]]:
    first_act = {m.step: m.ts_ms for m in reversed(act)}
    out = []
    for m in proj:
        if m.step in first_act:
            delta = (first_act[m.step] - m.ts_ms) / 1000.0
            out.append({"step": m.step, "projected_ms": m.ts_ms, "actual_ms": first_act[m.step],
                        "delta_s": delta})
    return out


def _close(contract: Contract, name: str, a: Value | None, b: Value | None) -> bool:
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return a == b
    scale = abs(contract.point(name).scale) if contract.has_point(name) else 0.0
    return abs(float(a) - float(b)) <= scale / 2 + 1e-9


def reconcile(contract: Contract, projection: Projection, entries: Sequence[Entry],
              from_ms: EpochMs, to_ms: EpochMs) -> Report:
    """Compare `entries` (the device's journal for [from_ms, to_ms]) with `projection`."""
    return reconcile_actual(contract, projection, actual_from_entries(entries), from_ms, to_ms)


def reconcile_actual(contract: Contract, projection: Projection, actual: Actual,
                     from_ms: EpochMs, to_ms: EpochMs) -> Report:
    """`reconcile` for entries already folded (`fold_entries`) into `actual`."""
    at = _projected_at(projection, to_ms)
    p_step = at.step if at else None
    a_step = actual.step if actual.step is not None else p_step
    p_mode = at.mode if at else None
    a_mode = actual.mode or p_mode
    timing = _timing(contract, _projected_steps(projection, to_ms), actual.steps)
    p_outputs: Mapping[str, Value] = dict(at.outputs) if at else {}
    outputs = [{"point": n, "projected": v, "actual": actual.outputs.get(n)}
               for n, v in p_outputs.items()
               if n in actual.outputs and not _close(contract, n, v, actual.outputs.get(n))]
    tol = dict(contract.tolerance.values)
    p_values: Mapping[str, Value] = dict(at.modelled) if at else {}
    values = [{"point": n, "projected": v, "actual": actual.values[n], "tolerance": tol[n]}
              for n, v in p_values.items()
              if n in tol and n in actual.values and not isinstance(v, bool)
              and abs(float(v) - float(actual.values[n])) > tol[n]]
    reasons = _reasons(contract, p_step, a_step, p_mode, a_mode, timing, values, actual)
    return Report(
        contract=contract.contract, version=contract.version, from_ms=from_ms, to_ms=to_ms,
        confidence=projection.confidence, step_projected=p_step, step_actual=a_step,
        outcome_projected=p_mode, outcome_actual=a_mode, timing=tuple(timing),
        outputs=tuple(outputs), values=tuple(values), faults=tuple(actual.faults),
        divergent=bool(reasons), reasons=tuple(reasons),
        category=_category(actual, a_mode) if reasons else None,
        actual_step_index=_index(contract, a_step),
        trajectory=tuple(trajectory(contract, projection, actual.trail, actual.values,
                                    from_ms, to_ms)))


def _reasons(contract: Contract, p_step: str | None, a_step: str | None, p_mode: str | None,
             a_mode: str | None, timing: list[dict[str, Any]], values: list[dict[str, Any]],
             actual: Actual) -> list[str]:
    reasons = []
    if p_mode != a_mode:
        reasons.append(f"outcome: projected {p_mode}, actual {a_mode}")
    if p_step != a_step and a_mode == Mode.RUNNING:
        reasons.append(f"step: projected {p_step}, actual {a_step}")
    late = [t for t in timing if abs(t["delta_s"]) > contract.tolerance.timing_s]
    if late:
        worst = max(late, key=lambda t: abs(t["delta_s"]))
        reasons.append(f"timing: step {worst['step']} off by {worst['delta_s']:.1f} s "
                       f"(tolerance {contract.tolerance.timing_s:g} s)")
    reasons.extend(f"value: {v['point']} projected {v['projected']:.3g}, actual "
                   f"{v['actual']:.3g} (tolerance {v['tolerance']:g})" for v in values)
    if actual.trip:
        reasons.append(f"trip: {actual.trip}")
    return reasons


def _category(actual: Actual, mode: str | None) -> Category:
    if actual.trip and mode == Mode.SAFE:
        return Category.TRIP  # still latched: only an operator (or an explicit policy) resumes
    if actual.trip:
        head = actual.trip.split(":")[0]
        return _TRIP_CATEGORY.get(head, Category.ADAPTERS if "quality" in head else Category.RUNTIME)
    if any(f["kind"] == EntryKind.ADAPTER_FAULT for f in actual.faults):
        return Category.ADAPTERS
    return Category.RUNTIME


def _index(contract: Contract, step: str | None) -> int | None:
    return next((i for i, s in enumerate(contract.steps) if s.name == step), None)
