"""Projection: what an offline device is doing, by running the same engine forward on a model.

Rules:
- The cycles are `start_ms + k * scan_period_ms` for every such time before `end_ms` (half-open),
  all readings GOOD and fresh (ts = the cycle), online, no commands.
- Modelled inputs follow `contract.expect`: a numeric read point moves at `rate_per_s` while its
  `when` holds, clamped into the point's `range`. The value is closed-form within a segment,
  `clamp(base + rate * (t - since) / 1000)`, and a segment is rebased only at the cycle where `when`
  flips (evaluated after that cycle's step, on the readings, the new outputs and `step_time`; an
  expression that cannot be evaluated counts as false). So a value never depends on how many cycles
  were stepped to reach it. Other read points hold `initial`, else the midpoint of their range,
  else 0 / false.
- Speed: while a cycle is "quiet" (no event, no write, state unchanged but for `last_ms`, no `when`
  flip), stepping it is the identity, so we probe the engine at the end of a stride (at most
  `max_stride_ms`, and never past the next sample) and, if that probe is not quiet, bisect to the
  first cycle that is not, which is then stepped for real. This equals stepping every cycle
  provided nothing flips and flips back inside one stride (true for timers, expiry, and monotone
  conditions on the linear model: `level >= 4.0`). `max_stride_ms=scan_period_ms` steps every
  cycle; tests/contracts/test_projection.py checks the two agree.
- Points are recorded at every cycle that emitted events and at the first cycle at or after each
  `start_ms + j * every_ms` (default: once a minute).
- Confidence = (1 - UNMODELLED_WEIGHT * unmodelled share of read points)
               * CONFIDENCE_HORIZON_MS / (CONFIDENCE_HORIZON_MS + horizon_ms):
  1.0 for an empty horizon with every read point modelled; it halves at a horizon of
  CONFIDENCE_HORIZON_MS and is at most 1 - UNMODELLED_WEIGHT when nothing is modelled.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from contracts.engine import Engine, EngineState, Event, StepResult
from contracts.engine_state import TERMINAL, Mode
from contracts.errors import ContractError, EngineError
from contracts.expr import STEP_TIME, Expr, parse
from contracts.inputs import Inputs, Quality, Reading
from contracts.schema import Contract, DataType, Point
from contracts.types import EpochMs, PointName, Value

DEFAULT_EVERY_MS = 60_000
"""One recorded point a minute: enough for a 24 h chart (1,440 points) without hiding transitions."""
DEFAULT_MAX_STRIDE_MS = 60_000
"""Longest run of cycles trusted to be quiet from its end alone; bounds what a non-monotone
condition could hide, and keeps bisection to ~10 probes at 10 Hz."""
CONFIDENCE_HORIZON_MS = 4 * 3600 * 1000
"""Horizon at which confidence halves: process drift and operator action make a projection
past a shift (~4 h) a guess."""
UNMODELLED_WEIGHT = 0.5
"""How much confidence is lost when no read point has a process model (held values only)."""

Pairs = tuple[tuple[PointName, Value], ...]


@dataclass(frozen=True, kw_only=True)
class ProjectionPoint:
    ts_ms: EpochMs
    step: str | None
    mode: str
    outputs: Pairs
    modelled: Pairs


@dataclass(frozen=True, kw_only=True)
class Projection:
    points: list[ProjectionPoint]
    transitions: list[Event]
    confidence: float
    end_state: EngineState


@dataclass(frozen=True, slots=True)
class _Model:
    """One read point's simulated value. `rate_per_ms` is 0 for a held point."""

    name: PointName
    rate_per_ms: float
    low: float | None
    high: float | None
    when: Expr | None


@dataclass(frozen=True, slots=True)
class _Segment:
    base: Value
    since: EpochMs
    active: bool


def confidence(contract: Contract, horizon_ms: int) -> float:
    """The projection confidence for `horizon_ms` (formula in the module docstring)."""
    reads = contract.read_points
    modelled = {e.point for e in contract.expect}
    unmodelled = sum(1 for p in reads if p.name not in modelled or _is_bool(p))
    share = unmodelled / len(reads) if reads else 0.0
    horizon = max(horizon_ms, 0)
    return (1 - UNMODELLED_WEIGHT * share) * CONFIDENCE_HORIZON_MS / (CONFIDENCE_HORIZON_MS + horizon)


def project(contract: Contract, from_state: EngineState | None, start_ms: EpochMs, end_ms: EpochMs,
            *, initial: Mapping[str, Value] | None = None, every_ms: int | None = None,
            max_stride_ms: int = DEFAULT_MAX_STRIDE_MS) -> Projection:
    """Run the engine forward from `from_state` (or the initial state) over [start_ms, end_ms).
    Raises ExprSyntaxError if a `when` or `until` does not parse, ValueError on a bad interval."""
    if every_ms is not None and every_ms <= 0 or max_stride_ms <= 0:
        raise ValueError(f"every_ms={every_ms!r} and max_stride_ms={max_stride_ms!r} must be > 0")
    run = _Projector(contract, from_state, start_ms, dict(initial or {}))
    run.go(end_ms, every_ms or DEFAULT_EVERY_MS, max_stride_ms)
    return Projection(points=run.points, transitions=run.transitions,
                      confidence=confidence(contract, end_ms - start_ms), end_state=run.state)


def _is_bool(p: Point) -> bool:
    return p.type is DataType.BOOL or p.table.is_bit


def _start_value(p: Point, initial: Mapping[str, Value]) -> Value:
    value = initial.get(p.name)
    if value is not None:  # a last-known value the hub never received stays unknown: use defaults
        return value
    if _is_bool(p):
        return False
    return (p.range[0] + p.range[1]) / 2 if p.range is not None else 0.0


def _models(contract: Contract) -> tuple[_Model, ...]:
    expect = {e.point: e for e in contract.expect}
    out = []
    for p in contract.read_points:
        e = expect.get(p.name)
        lo, hi = p.range if p.range is not None else (None, None)
        if e is None or _is_bool(p):
            out.append(_Model(p.name, 0.0, lo, hi, None))
        else:
            out.append(_Model(p.name, e.rate_per_s / 1000, lo, hi, parse(e.when) if e.when else None))
    return tuple(out)


class _Projector:
    """Mutable driver of one projection; the engine it calls stays pure."""

    def __init__(self, contract: Contract, from_state: EngineState | None, start: EpochMs,
                 initial: Mapping[str, Value]) -> None:
        self.engine = Engine(contract)
        self.contract, self.start, self.period = contract, start, contract.scan_period_ms
        self.state = from_state if from_state is not None else self.engine.initial_state()
        self.models = _models(contract)
        reads = contract.read_points
        self.segments = [_Segment(_start_value(p, initial), start, False) for p in reads]
        self.segments = [replace(s, active=a) for s, a in zip(self.segments, self._flags(self.state, start))]
        self.points: list[ProjectionPoint] = []
        self.transitions: list[Event] = []

    # -- the model -------------------------------------------------------------------------

    def _value(self, j: int, t: EpochMs) -> Value:
        seg, m = self.segments[j], self.models[j]
        if not seg.active or m.rate_per_ms == 0.0:
            return seg.base
        v = seg.base + m.rate_per_ms * (t - seg.since)
        if m.low is not None and v < m.low:
            return m.low
        return m.high if m.high is not None and v > m.high else v

    def _values(self, t: EpochMs) -> Pairs:
        return tuple((m.name, self._value(j, t)) for j, m in enumerate(self.models))

    def _flags(self, state: EngineState, t: EpochMs) -> tuple[bool, ...]:
        if all(m.when is None for m in self.models):
            return tuple(True for _ in self.models)
        env: dict[str, Value] = dict(self._values(t))
        env.update(state.outputs)
        started = state.step_started_ms
        env[STEP_TIME] = (t - started) / 1000 if started is not None else 0.0
        return tuple(m.when is None or _truth(m.when, env) for m in self.models)

    def _inputs(self, t: EpochMs) -> Inputs:
        good = Quality.GOOD
        return Inputs(readings={n: Reading(value=v, quality=good, ts_ms=t) for n, v in self._values(t)})

    # -- stepping --------------------------------------------------------------------------

    def _probe(self, k: int, k_last: int) -> tuple[StepResult, tuple[bool, ...], bool]:
        t = self.start + k * self.period
        prev = self.state if k == k_last + 1 else replace(self.state, last_ms=t - self.period)
        result = self.engine.step(prev, self._inputs(t), t)
        flags = self._flags(result.state, t)
        quiet = (not result.events and not result.writes and flags == self._active()
                 and result.state == replace(prev, last_ms=t))
        return result, flags, quiet

    def _active(self) -> tuple[bool, ...]:
        return tuple(s.active for s in self.segments)

    def _commit(self, k: int, result: StepResult, flags: tuple[bool, ...]) -> None:
        t = self.start + k * self.period
        self.segments = [s if s.active == f else _Segment(self._value(j, t), t, f)
                         for j, (s, f) in enumerate(zip(self.segments, flags))]
        self.state = result.state
        if result.events:
            self.transitions.extend(result.events)
            self._record(t)

    def _record(self, t: EpochMs) -> None:
        if self.points and self.points[-1].ts_ms == t:
            return
        s, steps = self.state, self.contract.steps
        in_step = s.mode is not Mode.PENDING and s.mode not in TERMINAL and s.step_index < len(steps)
        self.points.append(ProjectionPoint(
            ts_ms=t, step=steps[s.step_index].name if in_step else None, mode=s.mode.value,
            outputs=s.outputs, modelled=self._values(t)))

    def go(self, end: EpochMs, every_ms: int, max_stride_ms: int) -> None:
        """Step every cycle in [start, end), striding over quiet runs (module docstring)."""
        last_k = (end - self.start - 1) // self.period
        stride = max(max_stride_ms // self.period, 1)
        k_last, j = -1, 0
        while k_last < last_k:
            sample_k = -(-(j * every_ms) // self.period)
            k = min(sample_k, k_last + stride, last_k)
            result, flags, quiet = self._probe(k, k_last)
            if not quiet:
                k = self._bisect(k_last, k)
                result, flags, _ = self._probe(k, k_last)
            self._commit(k, result, flags)
            k_last = k
            if k == sample_k:
                self._record(self.start + k * self.period)
            while -(-(j * every_ms) // self.period) <= k:  # several samples may share a cycle
                j += 1

    def _bisect(self, k_last: int, hi: int) -> int:
        lo = k_last + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self._probe(mid, k_last)[2]:
                lo = mid + 1
            else:
                hi = mid
        return lo


def _truth(expr: Expr, env: Mapping[str, Value]) -> bool:
    try:
        return expr.evaluate(env) is True
    except (EngineError, ContractError):  # an unevaluable `when` never drives the model
        return False
