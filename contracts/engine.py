"""The pure contract engine: one call per scan cycle; state, inputs and time in; state, writes out.

Theory of operation (invariant 1: no I/O, no clock, no randomness, no set/dict-order reliance,
only + - * / and comparisons; time is integer EpochMs passed in):

    PENDING --now >= valid_from--> RUNNING --HOLD--> HELD --RESUME--> RUNNING
    RUNNING/HELD/OFFLINE_HOLD --guard trip | autonomy (then=safe_state) | engine error--> SAFE
    SAFE --RESUME, only if guards pass and autonomy is not exhausted--> RUNNING (step re-entered)
    RUNNING --offline past autonomy (then=hold)--> OFFLINE_HOLD --online again--> RUNNING
    any active mode --now >= valid_until--> EXPIRED;  --ABORT--> ABORTED
    RUNNING --last step done--> COMPLETED;  --timeout with on_timeout safe_state|fail--> FAILED

These moves are data: the table in contracts/engine_modes.py, which `Run.move`
(contracts/engine_steps.py) follows (a move it does not hold is an EngineError, so a fault) and the
hub reads to follow a journal's modes.

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

from contracts.engine_commands import CommandRunner
from contracts.engine_modes import Trigger, event_of, target_of
from contracts.engine_state import (
    LIVE, TERMINAL, EngineState, Event, EventKind, Mode, StepResult, Write,
)
from contracts.engine_steps import Run
from contracts.errors import EngineError
from contracts.guards import TripReason, check
from contracts.inputs import Inputs
from contracts.outputs import move, ramp_start
from contracts.types import EpochMs

__all__ = ["Engine", "EngineState", "Event", "EventKind", "Mode", "StepResult", "Write", "step"]


class Engine(CommandRunner):
    """Runs one contract. Construction compiles guards, targets and expressions once
    (contracts/engine_steps.py); the commands are contracts/engine_commands.py's."""

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
        run, c = Run(s, now), self.contract
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

    def _cycle(self, run: Run, inputs: Inputs) -> None:
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

    # -- outputs ---------------------------------------------------------------------------

    def _move(self, run: Run, s: EngineState, inputs: Inputs) -> None:
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

    def _result(self, run: Run, s: EngineState) -> StepResult:
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
