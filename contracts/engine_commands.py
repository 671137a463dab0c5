"""How commands move an engine's mode: HOLD, RESUME, ABORT, a manual WRITE and an INTERLOCK trip.

Rules (contracts/engine.py has the whole theory): a command moves the mode only where the mode
table holds its move, else it is refused (COMMAND_REFUSED, plus WRITE_REFUSED for a write); a WRITE
moves no mode and needs a live mode and a value `refuse_write` accepts; nothing but RESUME leaves
SAFE, and a RESUME refused because the trip's cause persists or autonomy is exhausted also emits
RESUME_REFUSED {command, cause}; outside a live mode an INTERLOCK has nothing to trip.
"""
from __future__ import annotations

from contracts.engine_modes import TRANSITIONS, Trigger
from contracts.engine_state import LIVE, TERMINAL, EventKind, Mode
from contracts.engine_steps import Run, StepRunner
from contracts.guards import Trip, TripReason
from contracts.inputs import Command, CommandKind
from contracts.outputs import WriteRefusal, refuse_write

_COMMAND_TRIGGER = {CommandKind.ABORT: Trigger.ABORT, CommandKind.HOLD: Trigger.HOLD,
                    CommandKind.RESUME: Trigger.RESUME}
"""The mode move each mode-changing command asks for (a WRITE asks for none)."""


class CommandRunner(StepRunner):
    """The command handling of contracts.engine.Engine (its base)."""

    def _pending(self, run: Run, commands: tuple[Command, ...]) -> None:
        for cmd in commands:
            if cmd.kind is CommandKind.ABORT and run.mode is Mode.PENDING:
                self._finish(run, Trigger.ABORT, command=cmd.id)
            else:
                self._refuse(run, cmd, "pending" if run.mode is Mode.PENDING else "terminal")

    def _refuse_all(self, run: Run, commands: tuple[Command, ...], reason: str) -> None:
        for cmd in commands:
            self._refuse(run, cmd, reason)

    def _refuse(self, run: Run, cmd: Command, reason: str) -> None:
        run.emit(EventKind.COMMAND_REFUSED, command=cmd.id, kind=cmd.kind.value, reason=reason)
        if cmd.kind is CommandKind.WRITE:
            run.emit(EventKind.WRITE_REFUSED, point=cmd.point, value=cmd.value,
                     reason=WriteRefusal.MODE.value)

    def _command(self, run: Run, cmd: Command, trip: Trip | None, exhausted: bool) -> None:
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

    def _interlock(self, run: Run, cmd: Command) -> None:
        """Another contract on the agent tripped and this one is interlocked with it: trip too
        (latched like a guard trip; an operator's RESUME clears it once this contract's own
        inputs are healthy). Outside a live mode there is nothing to trip."""
        if run.mode in LIVE:
            self._trip(run, Trip(point=str(cmd.point), reason=TripReason.INTERLOCK,
                                 detail=f"interlocked contract {cmd.point} tripped"))

    def _resume_safe(self, run: Run, cmd: Command, trip: Trip | None, exhausted: bool) -> None:
        if trip is not None or exhausted:
            reason = trip.reason.value if trip is not None else TripReason.AUTONOMY.value
            self._refuse(run, cmd, reason)
            cause = f"{reason}:{trip.point}" if trip is not None else reason
            run.emit(EventKind.RESUME_REFUSED, command=cmd.id, cause=cause)
            return
        run.trip = None
        run.move(Trigger.RESUME, command=cmd.id, reason="safe")
        self._enter(run, run.index)

    def _manual_write(self, run: Run, cmd: Command) -> None:
        refusal = refuse_write(self.contract, cmd.point, cmd.value)
        if refusal is not None:
            run.emit(EventKind.COMMAND_REFUSED, command=cmd.id, kind=cmd.kind.value,
                     reason=refusal.value)
            run.emit(EventKind.WRITE_REFUSED, point=cmd.point, value=cmd.value,
                     reason=refusal.value)
            return
        assert cmd.value is not None  # refuse_write rejects None
        run.targets[self._names.index(str(cmd.point))] = cmd.value
