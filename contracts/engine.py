"""The pure contract engine: one call per scan cycle; state, inputs and time in; state, writes out.

Theory of operation (invariant 1: no I/O, no clock, no randomness, no set/dict-order reliance,
only + - * / and comparisons; time is integer EpochMs passed in):

    PENDING --now >= valid_from--> RUNNING --HOLD--> HELD --RESUME--> RUNNING
    RUNNING/HELD/OFFLINE_HOLD --guard trip | autonomy (then=safe_state) | engine error--> SAFE
    SAFE --RESUME, only if guards pass and autonomy is not exhausted--> RUNNING (step re-entered)
    RUNNING --offline past autonomy (then=hold)--> OFFLINE_HOLD --online again--> RUNNING
    any active mode --now >= valid_until--> EXPIRED;  --ABORT--> ABORTED
    RUNNING --last step done--> COMPLETED;  --timeout with on_timeout safe_state|fail--> FAILED

These moves are data: the table in contracts/engine_modes.py, which `_Run.move` follows (a move
it does not hold is an EngineError, so a fault) and the hub reads to follow a journal's modes.

One cycle, in this order: expiry; start; guard trip; autonomy; commands (in the given order); step
progression (at most one step boundary per cycle, and a step entered this cycle is first evaluated
the next cycle); then outputs move toward their targets within rate limits (contracts/outputs.py).
Entering SAFE or a terminal mode puts outputs at `safe_state` in the same cycle, without a rate
limit: safety does not ramp. HELD and OFFLINE_HOLD pause the step clock (the paused time is added
back on resume); RESUME out of SAFE re-enters the step with a fresh clock, and a RESUME refused
(the trip's cause persists, or autonomy is exhausted) emits RESUME_REFUSED {command, cause} besides
COMMAND_REFUSED; nothing but RESUME leaves SAFE. A Write is emitted only for an owned output whose
value changed. No exception escapes `step`: a fault becomes ENGINE_ERROR and SAFE.

Ramps start from the device: the inputs may carry the read-back of owned write points (same name).
When a rate-limited output is about to move (its target differs from it) and a GOOD read-back
differs from the last command by more than half a raw step (another master moved it, or our write
never landed), the ramp starts from the read-back, clamped into the limits. An output at its target
is left alone whatever the read-back says (no fighting a second master: the agent alarms).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.engine_modes import TRANSITIONS, Trigger, event_of, next_mode, target_of
from contracts.engine_state import (
    LIVE, TERMINAL, EngineState, Event, EventKind, FieldValue, Mode, StepResult, Write,
)
from contracts.errors import EngineError
from contracts.expr import STEP_TIME, Expr, parse
from contracts.guards import Trip, TripReason, check, compile_guards
from contracts.inputs import Command, CommandKind, Inputs
from contracts.outputs import (
    WriteRefusal, compile_outputs, move, ramp_start, refuse_write, safe_plan, step_plans,
)
from contracts.schema import Contract, OfflineAction, OnTimeout
from contracts.types import EpochMs, Value

__all__ = ["Engine", "EngineState", "Event", "EventKind", "Mode", "StepResult", "Write", "step"]


class _Run:
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


_COMMAND_TRIGGER = {CommandKind.ABORT: Trigger.ABORT, CommandKind.HOLD: Trigger.HOLD,
                    CommandKind.RESUME: Trigger.RESUME}
"""The mode move each mode-changing command asks for (a WRITE asks for none)."""


class Engine:
    """Runs one contract. Construction compiles guards, targets and expressions once."""

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

    def initial_state(self) -> EngineState:
        """PENDING, with outputs and targets at the safe state."""
        pairs = tuple(zip(self._names, self._safe))
        return EngineState(mode=Mode.PENDING, outputs=pairs, targets=pairs)

    def step(self, state: EngineState, inputs: Inputs, now_ms: EpochMs) -> StepResult:
        """One scan cycle at `now_ms`. Never raises: a fault yields ENGINE_ERROR and SAFE."""
        try:
            return self._step(state, inputs, now_ms)
        except Exception as exc:  # invariant 3: an engine fault is a trip, not a crash
            return self._fault(state, now_ms, exc)

    # -- the cycle -------------------------------------------------------------------------

    def _step(self, s: EngineState, inputs: Inputs, now: EpochMs) -> StepResult:
        if tuple(n for n, _ in s.outputs) != self._names:
            raise EngineError(f"state outputs {s.outputs!r} do not match contract {self._names!r}")
        run, c = _Run(s, now), self.contract
        if run.mode in TERMINAL:
            self._refuse_all(run, inputs.commands, "terminal")
        elif now >= c.valid_until:
            self._finish(run, Trigger.EXPIRE, valid_until=c.valid_until)
            self._refuse_all(run, inputs.commands, "expired")
        elif run.mode is Mode.PENDING and now < c.valid_from:
            self._pending(run, inputs.commands)
        else:
            if run.mode is Mode.PENDING:
                run.move(Trigger.START, contract=c.contract, version=c.version)
                self._enter(run, 0)
            self._cycle(run, inputs)
        if run.mode in LIVE:
            self._move(run, s, inputs)
        return self._result(run, s)

    def _cycle(self, run: _Run, inputs: Inputs) -> None:
        trip = check(self._guards, inputs.readings, run.now)
        if trip is not None and run.mode in LIVE:
            self._trip(run, trip)
        exhausted = self._exhausted(inputs, run.now)
        if run.mode in LIVE:
            self._autonomy(run, inputs.online, exhausted)
        for cmd in inputs.commands:
            self._command(run, cmd, trip, exhausted)
        if run.mode is Mode.RUNNING and not run.entered:
            self._advance(run, inputs)

    def _exhausted(self, inputs: Inputs, now: EpochMs) -> bool:
        last = inputs.last_contact_ms
        return (not inputs.online and last is not None
                and now - last >= self.contract.offline.autonomy_s * 1000)

    def _autonomy(self, run: _Run, online: bool, exhausted: bool) -> None:
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

    def _trip(self, run: _Run, trip: Trip) -> None:
        run.trip = trip.reason
        run.move(Trigger.TRIP, point=trip.point, reason=trip.reason.value, value=trip.value,
                 limit=trip.limit, detail=trip.detail)
        self._to_safe(run, reason=trip.reason.value)

    def _advance(self, run: _Run, inputs: Inputs) -> None:
        i, elapsed = run.index, run.now - (run.started or 0)
        until, for_ms, timeout_ms = self._until[i], self._for_ms[i], self._timeout_ms[i]
        if until is not None and self._holds(i, until, run, inputs, elapsed):
            self._done(run, i, "until", elapsed)
        elif for_ms is not None and elapsed >= for_ms:
            self._done(run, i, "for", elapsed)
        elif timeout_ms is not None and elapsed >= timeout_ms:
            self._timeout(run, i, elapsed)

    def _holds(self, i: int, until: Expr, run: _Run, inputs: Inputs, elapsed: int) -> bool:
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

    def _done(self, run: _Run, i: int, reason: str, elapsed: int) -> None:
        run.emit(EventKind.STEP_DONE, step=self.contract.steps[i].name, index=i, reason=reason,
                 elapsed_ms=elapsed)
        self._enter(run, i + 1)

    def _timeout(self, run: _Run, i: int, elapsed: int) -> None:
        step = self.contract.steps[i]
        run.emit(EventKind.STEP_TIMEOUT, step=step.name, index=i, elapsed_ms=elapsed,
                 on_timeout=step.on_timeout.value)
        if step.on_timeout is OnTimeout.NEXT:
            self._enter(run, i + 1)
        else:
            self._finish(run, Trigger.FAIL, step=step.name, reason="timeout")

    def _enter(self, run: _Run, i: int) -> None:
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

    def _finish(self, run: _Run, trigger: Trigger, **fields: FieldValue) -> None:
        was_live = run.mode in LIVE
        run.move(trigger, **fields)
        if was_live:
            self._to_safe(run, reason=run.mode.value)
        run.outputs, run.targets = list(self._safe), list(self._safe)

    def _to_safe(self, run: _Run, *, reason: str) -> None:
        run.outputs, run.targets = list(self._safe), list(self._safe)
        run.emit(EventKind.SAFE_STATE, reason=reason)

    def _unpause(self, run: _Run, trigger: Trigger, **fields: FieldValue) -> None:
        if run.started is not None and run.paused is not None:
            run.started += run.now - run.paused
        run.paused = None
        run.move(trigger, **fields)

    # -- commands --------------------------------------------------------------------------

    def _pending(self, run: _Run, commands: tuple[Command, ...]) -> None:
        for cmd in commands:
            if cmd.kind is CommandKind.ABORT and run.mode is Mode.PENDING:
                self._finish(run, Trigger.ABORT, command=cmd.id)
            else:
                self._refuse(run, cmd, "pending" if run.mode is Mode.PENDING else "terminal")

    def _refuse_all(self, run: _Run, commands: tuple[Command, ...], reason: str) -> None:
        for cmd in commands:
            self._refuse(run, cmd, reason)

    def _refuse(self, run: _Run, cmd: Command, reason: str) -> None:
        run.emit(EventKind.COMMAND_REFUSED, command=cmd.id, kind=cmd.kind.value, reason=reason)
        if cmd.kind is CommandKind.WRITE:
            run.emit(EventKind.WRITE_REFUSED, point=cmd.point, value=cmd.value,
                     reason=WriteRefusal.MODE.value)

    def _command(self, run: _Run, cmd: Command, trip: Trip | None, exhausted: bool) -> None:
        """A command moves the mode only where the mode table holds its move; a WRITE moves
        none and needs a live mode."""
        kind, mode = cmd.kind, run.mode
        if kind is CommandKind.INTERLOCK:
            self._interlock(run, cmd)
        elif mode in TERMINAL:
            self._refuse(run, cmd, "terminal")
        elif kind is CommandKind.WRITE:
            if mode in LIVE:
                self._manual_write(run, cmd)
            else:
                self._refuse(run, cmd, "mode")
        elif (mode, _COMMAND_TRIGGER[kind]) not in TRANSITIONS:
            self._refuse(run, cmd, "mode")
        elif kind is CommandKind.ABORT:
            self._finish(run, Trigger.ABORT, command=cmd.id)
        elif kind is CommandKind.HOLD:
            run.paused = run.now
            run.move(Trigger.HOLD, command=cmd.id)
        elif mode is Mode.SAFE:
            self._resume_safe(run, cmd, trip, exhausted)
        else:
            self._unpause(run, Trigger.RESUME, command=cmd.id, reason="held")

    def _interlock(self, run: _Run, cmd: Command) -> None:
        """Another contract on the agent tripped and this one is interlocked with it: trip too
        (latched like a guard trip; an operator's RESUME clears it once this contract's own
        inputs are healthy). Outside a live mode there is nothing to trip."""
        if run.mode in LIVE:
            self._trip(run, Trip(point=str(cmd.point), reason=TripReason.INTERLOCK,
                                 detail=f"interlocked contract {cmd.point} tripped"))

    def _resume_safe(self, run: _Run, cmd: Command, trip: Trip | None, exhausted: bool) -> None:
        if trip is not None or exhausted:
            reason = trip.reason.value if trip is not None else TripReason.AUTONOMY.value
            self._refuse(run, cmd, reason)
            cause = f"{reason}:{trip.point}" if trip is not None else reason
            run.emit(EventKind.RESUME_REFUSED, command=cmd.id, cause=cause)
            return
        run.trip = None
        run.move(Trigger.RESUME, command=cmd.id, reason="safe")
        self._enter(run, run.index)

    def _manual_write(self, run: _Run, cmd: Command) -> None:
        refusal = refuse_write(self.contract, cmd.point, cmd.value)
        if refusal is not None:
            run.emit(EventKind.COMMAND_REFUSED, command=cmd.id, kind=cmd.kind.value,
                     reason=refusal.value)
            run.emit(EventKind.WRITE_REFUSED, point=cmd.point, value=cmd.value,
                     reason=refusal.value)
            return
        assert cmd.value is not None  # refuse_write rejects None
        run.targets[self._names.index(str(cmd.point))] = cmd.value

    # -- outputs ---------------------------------------------------------------------------

    def _move(self, run: _Run, s: EngineState, inputs: Inputs) -> None:
        last = s.last_ms
        elapsed = run.now - last if last is not None and run.now > last else 0
        for j, out in enumerate(self._outs):
            target = run.targets[j]
            start = ramp_start(out, run.outputs[j], target, inputs.readings.get(out.name))
            value, limited = move(out, start, target, elapsed)
            run.outputs[j] = value
            old_value, old_target = s.outputs[j][1], s.targets[j][1]
            if limited and (target != old_target or old_value == old_target):
                run.emit(EventKind.WRITE_RATE_LIMITED, point=out.name, value=value,
                         target=target, limit=out.rate_per_s)

    def _result(self, run: _Run, s: EngineState) -> StepResult:
        names = self._names
        writes = tuple(Write(point=n, value=v) for n, (_, old), v in zip(names, s.outputs, run.outputs)
                       if old != v)
        state = EngineState(
            mode=run.mode, step_index=run.index, step_started_ms=run.started,
            outputs=tuple(zip(names, run.outputs)), targets=tuple(zip(names, run.targets)),
            trip=run.trip, last_ms=run.now, paused_ms=run.paused)
        return StepResult(state=state, writes=writes, events=tuple(run.events))

    def _fault(self, s: EngineState, now: EpochMs, exc: Exception) -> StepResult:
        prev: Mapping[str, Any] = _safe_dict(s)
        safe = tuple(zip(self._names, self._safe))
        writes = tuple(Write(point=n, value=v) for n, v in safe if prev.get(n) != v or n not in prev)
        error = f"{type(exc).__name__}: {exc}"
        events = (Event(kind=event_of(Trigger.FAULT), ts_ms=now, fields=(("error", error),)),
                  Event(kind=EventKind.SAFE_STATE, ts_ms=now,
                        fields=(("reason", TripReason.ENGINE_ERROR.value),)))
        index = s.step_index if isinstance(getattr(s, "step_index", None), int) else 0
        state = EngineState(mode=target_of(Trigger.FAULT), step_index=index, outputs=safe, targets=safe,
                            trip=TripReason.ENGINE_ERROR, last_ms=now)
        return StepResult(state=state, writes=writes, events=events)


def _safe_dict(s: EngineState) -> Mapping[str, Any]:
    try:
        return dict(s.outputs)
    except Exception:  # the state itself is what faulted; treat every output as unknown
        return {}


def step(engine: Engine, state: EngineState, inputs: Inputs, now_ms: EpochMs) -> StepResult:
    """Convenience alias of `engine.step(state, inputs, now_ms)`; never raises."""
    return engine.step(state, inputs, now_ms)
