"""The mode and step moves of one contract's engine: trips, bounded autonomy, step progression,
entering SAFE and the terminal modes (the rules are in contracts/engine.py's theory of operation).

Rules: a mode changes only through `Run.move`, which follows the mode table
(contracts/engine_modes.py); entering SAFE or a terminal mode puts outputs and targets at
`safe_state` at once (no ramp); a step entered this cycle is first evaluated the next cycle;
HELD and OFFLINE_HOLD pause the step clock and `_unpause` adds the paused time back. Pure, like
the engine (invariant 1).
"""
from __future__ import annotations

from contracts.engine_modes import Trigger, event_of, next_mode
from contracts.engine_state import LIVE, EngineState, Event, EventKind, FieldValue, Mode
from contracts.errors import EngineError
from contracts.expr import STEP_TIME, Expr, parse
from contracts.guards import Trip, TripReason, compile_guards
from contracts.inputs import Inputs
from contracts.outputs import compile_outputs, safe_plan, step_plans
from contracts.schema import Contract, OfflineAction, OnTimeout
from contracts.types import EpochMs, Value


class Run:
    """Mutable scratch for one cycle; never escapes `Engine.step`."""

    __slots__ = ("mode", "index", "started", "targets", "outputs", "trip", "paused", "now",
                 "events", "entered")

    def __init__(self, s: EngineState, now: EpochMs) -> None:
        self.mode, self.index, self.started = s.mode, s.step_index, s.step_started_ms
        self.targets = [v for _, v in s.targets]
        self.outputs = [v for _, v in s.outputs]
        self.trip, self.paused, self.now = s.trip, s.paused_ms, now
        self.events: list[Event] = []
        self.entered = False

    def emit(self, kind: EventKind, /, **fields: FieldValue) -> None:
        self.events.append(Event(kind=kind, ts_ms=self.now, fields=tuple(fields.items())))

    def move(self, trigger: Trigger, /, **fields: FieldValue) -> None:
        """Change mode by the mode table (contracts/engine_modes.py) and emit its event.
        Raises EngineError for a move the table does not hold (the engine then faults to SAFE)."""
        self.mode = next_mode(self.mode, trigger)
        self.emit(event_of(trigger), **fields)


class StepRunner:
    """A contract compiled once (guards, targets, expressions), and the moves of its modes and steps
    within one cycle's `Run`. The base of contracts.engine.Engine."""

    def __init__(self, contract: Contract) -> None:
        """Raises ExprSyntaxError if a step's `until` does not parse (validation prevents it)."""
        self.contract = contract
        self._guards = compile_guards(contract)
        self._outs = compile_outputs(contract)
        self._names = tuple(o.name for o in self._outs)
        self._safe = safe_plan(contract, self._outs).targets
        self._plans = step_plans(contract, self._outs)
        self._until: tuple[Expr | None, ...] = tuple(
            parse(s.until) if s.until else None for s in contract.steps)
        self._for_ms = tuple(None if s.for_s is None else s.for_s * 1000 for s in contract.steps)
        self._timeout_ms = tuple(
            None if s.timeout_s is None else s.timeout_s * 1000 for s in contract.steps)
        owned = frozenset(self._names)
        self._env_reads = tuple(p.name for p in contract.points if p.name not in owned)

    def _exhausted(self, inputs: Inputs, now: EpochMs) -> bool:
        last = inputs.last_contact_ms
        return (not inputs.online and last is not None
                and now - last >= self.contract.offline.autonomy_s * 1000)

    def _autonomy(self, run: Run, online: bool, exhausted: bool) -> None:
        if run.mode is Mode.OFFLINE_HOLD:
            if online:
                self._unpause(run, Trigger.ONLINE, reason="online")
            return
        then = self.contract.offline.then
        if not exhausted or (then is OfflineAction.HOLD and run.mode is not Mode.RUNNING):
            return
        to_safe = then is OfflineAction.SAFE_STATE
        run.move(Trigger.AUTONOMY_SAFE if to_safe else Trigger.AUTONOMY_HOLD,
                 autonomy_s=self.contract.offline.autonomy_s, then=then.value)
        if to_safe:
            run.trip = TripReason.AUTONOMY
            self._to_safe(run, reason=TripReason.AUTONOMY.value)
        else:
            run.paused = run.now

    def _trip(self, run: Run, trip: Trip) -> None:
        run.trip = trip.reason
        run.move(Trigger.TRIP, point=trip.point, reason=trip.reason.value, value=trip.value,
                 limit=trip.limit, detail=trip.detail)
        self._to_safe(run, reason=trip.reason.value)

    def _advance(self, run: Run, inputs: Inputs) -> None:
        i, elapsed = run.index, run.now - (run.started or 0)
        until, for_ms, timeout_ms = self._until[i], self._for_ms[i], self._timeout_ms[i]
        if until is not None and self._holds(i, until, run, inputs, elapsed):
            self._done(run, i, "until", elapsed)
        elif for_ms is not None and elapsed >= for_ms:
            self._done(run, i, "for", elapsed)
        elif timeout_ms is not None and elapsed >= timeout_ms:
            self._timeout(run, i, elapsed)

    def _holds(self, i: int, until: Expr, run: Run, inputs: Inputs, elapsed: int) -> bool:
        env: dict[str, Value] = {}
        readings = inputs.readings
        for name in self._env_reads:
            r = readings.get(name)
            if r is not None and r.value is not None:
                env[name] = r.value
        for name, value in zip(self._names, run.outputs):
            env[name] = value
        env[STEP_TIME] = elapsed / 1000
        result = until.evaluate(env)
        if not isinstance(result, bool):
            raise EngineError(f"steps[{i}].until evaluated to {result!r}, not true/false")
        return result

    def _done(self, run: Run, i: int, reason: str, elapsed: int) -> None:
        run.emit(EventKind.STEP_DONE, step=self.contract.steps[i].name, index=i, reason=reason,
                 elapsed_ms=elapsed)
        self._enter(run, i + 1)

    def _timeout(self, run: Run, i: int, elapsed: int) -> None:
        step = self.contract.steps[i]
        run.emit(EventKind.STEP_TIMEOUT, step=step.name, index=i, elapsed_ms=elapsed,
                 on_timeout=step.on_timeout.value)
        if step.on_timeout is OnTimeout.NEXT:
            self._enter(run, i + 1)
        else:
            self._finish(run, Trigger.FAIL, step=step.name, reason="timeout")

    def _enter(self, run: Run, i: int) -> None:
        steps = self.contract.steps
        if i >= len(steps):
            self._finish(run, Trigger.COMPLETE, steps=len(steps))
            return
        plan = self._plans[i]
        run.index, run.started, run.paused, run.entered = i, run.now, None, True
        run.targets = list(plan.targets)
        run.emit(EventKind.STEP_ENTERED, step=steps[i].name, index=i)
        for clamp in plan.clamps:
            run.emit(EventKind.WRITE_CLAMPED, point=clamp.point, value=clamp.requested,
                     limit=clamp.limit)

    def _finish(self, run: Run, trigger: Trigger, **fields: FieldValue) -> None:
        was_live = run.mode in LIVE
        run.move(trigger, **fields)
        if was_live:
            self._to_safe(run, reason=run.mode.value)
        run.outputs, run.targets = list(self._safe), list(self._safe)

    def _to_safe(self, run: Run, *, reason: str) -> None:
        run.outputs, run.targets = list(self._safe), list(self._safe)
        run.emit(EventKind.SAFE_STATE, reason=reason)

    def _unpause(self, run: Run, trigger: Trigger, **fields: FieldValue) -> None:
        if run.started is not None and run.paused is not None:
            run.started += run.now - run.paused
        run.paused = None
        run.move(trigger, **fields)
