"""The engine's mode machine as a table: the engine moves only by it, and a journal reader
following `mode_after` over the events sees the engine's mode after every cycle."""
from __future__ import annotations

import pytest
from hypothesis import given

from contracts.engine_modes import (
    MODE_RULES, TRANSITIONS, Trigger, event_of, mode_after, next_mode, target_of, trigger_of,
)
from contracts.engine_state import TERMINAL, EventKind, Mode
from contracts.errors import EngineError
from contracts.replay import Cycle
from tests.contracts.test_engine_properties import SETTINGS, cycles, run


def test_every_trigger_has_one_rule_and_leaves_no_terminal_mode_but_by_a_fault() -> None:
    assert sorted(r.trigger for r in MODE_RULES) == sorted(Trigger)
    for (mode, trigger), to in TRANSITIONS.items():
        assert to is target_of(trigger)
        assert mode not in TERMINAL or trigger is Trigger.FAULT


def test_a_move_the_table_does_not_hold_raises_naming_the_mode_and_trigger() -> None:
    assert next_mode(Mode.RUNNING, Trigger.HOLD) is Mode.HELD
    with pytest.raises(EngineError, match="mode completed: resume is not a move"):
        next_mode(Mode.COMPLETED, Trigger.RESUME)
    with pytest.raises(EngineError, match="mode held: hold"):
        next_mode(Mode.HELD, Trigger.HOLD)


@pytest.mark.parametrize(("event", "then", "mode"), [
    (EventKind.STARTED, None, Mode.RUNNING), (EventKind.HELD, None, Mode.HELD),
    (EventKind.RESUMED, None, Mode.RUNNING), (EventKind.GUARD_TRIP, None, Mode.SAFE),
    (EventKind.AUTONOMY_EXHAUSTED, "safe_state", Mode.SAFE),
    (EventKind.AUTONOMY_EXHAUSTED, "hold", Mode.OFFLINE_HOLD),
    (EventKind.COMPLETED, None, Mode.COMPLETED), (EventKind.FAILED, None, Mode.FAILED),
    (EventKind.EXPIRED, None, Mode.EXPIRED), (EventKind.ABORTED, None, Mode.ABORTED),
    (EventKind.ENGINE_ERROR, None, Mode.SAFE),
    (EventKind.SAFE_STATE, None, None), (EventKind.STEP_ENTERED, None, None),
    ("from_a_newer_agent", None, None),
])
def test_mode_after_an_event(event: EventKind | str, then: str | None, mode: Mode | None) -> None:
    assert mode_after(event, then) is mode


def test_each_trigger_is_recorded_by_its_event() -> None:
    for trigger in Trigger:
        then = {Trigger.AUTONOMY_HOLD: "hold", Trigger.AUTONOMY_SAFE: "safe_state"}.get(trigger)
        found = trigger_of(event_of(trigger), then)
        assert found is trigger or {found, trigger} == {Trigger.RESUME, Trigger.ONLINE}


@SETTINGS
@given(cycles())
def test_following_mode_after_over_the_events_gives_the_engines_mode_every_cycle(
        cs: list[Cycle]) -> None:
    mode = Mode.PENDING
    for r in run(cs).results:
        for e in r.events:
            mode = mode_after(e.kind, e.get("then")) or mode
        assert mode is r.state.mode
