"""Live model divergence — pure: is the process following the contract's `expect` model?

Connected is not correct: a pump mapped to the wrong register answers every write, and only the
process shows that nothing happens. Rules, per `expect` entry whose point has a tolerance
(`tolerance.values`; an expectation without one is not judged):
- The model *applies* while the contract runs a step (mode RUNNING), the point's reading is GOOD
  and numeric, and the expectation's `when` holds — evaluated, as the projection does
  (contracts/projection.py), on the readings, the engine's commanded outputs and `step_time`; a
  `when` that cannot be evaluated does not hold. No `when`: it applies whenever the step runs.
- When it starts to apply, the actual value is the anchor: the model then predicts
  `anchor + rate_per_s * elapsed`, clamped into the point's range (a full tank stays full). The
  window is the time since the anchor; it restarts whenever the model stops applying.
- Diverged: the reading falls short of the model — it moved less than modelled, or the other way
  (`predicted - actual` for a rising model, `actual - predicted` for a falling one, |actual -
  predicted| for a model that holds still) — by more than the point's tolerance, continuously for
  `after_s` (the configurable time: longer than a pump's spin-up and a scan's noise, far shorter
  than a step's timeout). A process that moves *faster* than modelled is not judged here: the
  range guard and the step's `until` answer overshoot; this check is for a command the process
  does not answer (the shipped tank example models 0.002 m/s where the simulator fills 0.016). Then one MODEL_DIVERGENCE event, with the prediction, the reading, the error, the
  tolerance and the commanded outputs the `when` names. It is raised once per window; when the
  reading comes back within tolerance while the model applies, one MODEL_DIVERGENCE_CLEARED. A
  window that ends while diverged clears nothing: the hub's alarm stays until the process follows
  the model again or a new contract starts.
- Only the hub's policy decides what happens next (hub/alarms.py, hub.config `[policies.model]`):
  the agent itself changes nothing — the engine never sees this check (replay stays exact).
Values in, values out: the caller supplies time.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contracts.engine_state import EngineState, Mode
from contracts.errors import ContractError, EngineError
from contracts.expr import STEP_TIME, Expr, names_in_order, parse
from contracts.inputs import Reading
from contracts.schema import Contract, Expectation
from contracts.types import EpochMs, PointName, Value

DEFAULT_AFTER_S = 5.0
"""How long a reading must stay beyond tolerance before it counts: a few seconds outlasts a
drive's ramp and a sensor's noise, and is far inside any step timeout (the field case: 600 s)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """One event for the journal: which point, what the model said, what the device showed."""

    diverged: bool  # True: MODEL_DIVERGENCE; False: back within tolerance (…_CLEARED)
    point: PointName
    fields: Mapping[str, Value | str | None | Mapping[str, Value]]


@dataclass(frozen=True, slots=True)
class _Window:
    since_ms: EpochMs
    anchor: float
    beyond_since_ms: EpochMs | None = None
    raised: bool = False


@dataclass(frozen=True, slots=True)
class _Watched:
    expectation: Expectation
    when: Expr | None
    tolerance: float
    low: float | None
    high: float | None
    commanded: tuple[PointName, ...]  # the write points `when` names, quoted in the event


class ModelWatch:
    """The divergence check for one contract. `observe` once per scan cycle."""

    def __init__(self, contract: Contract, after_s: float = DEFAULT_AFTER_S) -> None:
        if after_s < 0:
            raise ValueError(f"after_s must be >= 0, got {after_s!r}")
        self.after_ms = int(after_s * 1000)
        tolerances = dict(contract.tolerance.values)
        writes = {p.name for p in contract.write_points}
        self.watched: tuple[_Watched, ...] = tuple(
            _watched(contract, e, tolerances[e.point], writes) for e in contract.expect
            if e.point in tolerances and contract.has_point(e.point))
        self.windows: dict[PointName, _Window] = {}

    def observe(self, state: EngineState, readings: Mapping[PointName, Reading],
                now_ms: EpochMs) -> list[Finding]:
        """Findings of this cycle (usually none), after the engine stepped to `state`."""
        findings: list[Finding] = []
        for w in self.watched:
            finding = self._one(w, state, readings, now_ms)
            if finding is not None:
                findings.append(finding)
        return findings

    def _one(self, w: _Watched, state: EngineState, readings: Mapping[PointName, Reading],
             now_ms: EpochMs) -> Finding | None:
        name = w.expectation.point
        actual = _number(readings.get(name))
        if actual is None or state.mode is not Mode.RUNNING or not _holds(w, state, readings, now_ms):
            self.windows.pop(name, None)  # the window restarts when the model applies again
            return None
        window = self.windows.get(name) or _Window(now_ms, actual)
        predicted = _clamp(window.anchor + w.expectation.rate_per_s * (now_ms - window.since_ms)
                           / 1000, w.low, w.high)
        beyond = _shortfall(w.expectation.rate_per_s, actual, predicted) > w.tolerance
        finding = None
        if not beyond:
            if window.raised:
                finding = self._finding(False, w, window, state, actual,
                                        predicted, now_ms)
            window = _Window(window.since_ms, window.anchor)
        else:
            since = window.beyond_since_ms if window.beyond_since_ms is not None else now_ms
            raise_now = not window.raised and now_ms - since >= self.after_ms
            window = _Window(window.since_ms, window.anchor, since, window.raised or raise_now)
            if raise_now:
                finding = self._finding(True, w, window, state, actual,
                                        predicted, now_ms)
        self.windows[name] = window
        return finding

    def _finding(self, diverged: bool, w: _Watched, window: _Window, state: EngineState,
                 actual: float, predicted: float, now_ms: EpochMs) -> Finding:
        outputs = dict(state.outputs)
        commanded = {n: outputs[n] for n in w.commanded if n in outputs}
        return Finding(diverged=diverged, point=w.expectation.point, fields={
            "point": w.expectation.point, "expected": round(predicted, 6), "actual": round(actual, 6),
            "error": round(actual - predicted, 6), "tolerance": w.tolerance,
            "rate_per_s": w.expectation.rate_per_s, "window_s": (now_ms - window.since_ms) / 1000,
            "beyond_s": (now_ms - (window.beyond_since_ms or now_ms)) / 1000,
            "when": w.expectation.when, "commanded": commanded})


def _watched(contract: Contract, e: Expectation, tolerance: float, writes: set[str]) -> _Watched:
    p = contract.point(e.point)
    low, high = p.range if p.range is not None else (None, None)
    when = parse(e.when) if e.when else None
    named = names_in_order(when) if when is not None else ()
    return _Watched(expectation=e, when=when, tolerance=tolerance, low=low, high=high,
                    commanded=tuple(n for n in named if n in writes))


def _holds(w: _Watched, state: EngineState, readings: Mapping[PointName, Reading],
           now_ms: EpochMs) -> bool:
    if w.when is None:
        return True
    env: dict[str, Value] = {n: r.value for n, r in readings.items() if r.good and r.value is not None}
    env.update(state.outputs)
    started = state.step_started_ms
    env[STEP_TIME] = (now_ms - started) / 1000 if started is not None else 0.0
    try:
        return w.when.evaluate(env) is True
    except (EngineError, ContractError):
        return False


def _shortfall(rate: float, actual: float, predicted: float) -> float:
    """How far `actual` lags the model in the model's direction (negative: ahead of it)."""
    if rate > 0:
        return predicted - actual
    if rate < 0:
        return actual - predicted
    return abs(actual - predicted)


def _number(r: Reading | None) -> float | None:
    if r is None or not r.good or isinstance(r.value, bool) or not isinstance(r.value, (int, float)):
        return None
    return float(r.value)


def _clamp(v: float, low: float | None, high: float | None) -> float:
    if low is not None and v < low:
        return low
    return high if high is not None and v > high else v
