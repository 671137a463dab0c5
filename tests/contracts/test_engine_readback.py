"""The engine and the device's read-back: ramps start from what the device shows, a refused
resume is an explicit event with its cause, and a trip stays latched until an operator resumes."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.engine import Engine, EventKind, Mode
from contracts.inputs import Command, CommandKind, Inputs, Quality, Reading
from contracts.outputs import Output, ramp_start
from tests.contracts.test_engine import P, Run, good, tank

PUMP = Output("pump_speed", False, 0.0, 1500.0, 300.0, 0.1)


def test_ramp_start_is_the_read_back_only_when_the_output_moves_and_the_device_differs() -> None:
    assert ramp_start(PUMP, 900.0, 0.0, good(500.0, 0)) == 500.0
    assert ramp_start(PUMP, 900.0, 900.0, good(500.0, 0)) == 900.0  # at target: not fought
    assert ramp_start(PUMP, 900.0, 0.0, good(900.04, 0)) == 900.0  # within half a raw step
    assert ramp_start(PUMP, 900.0, 0.0, None) == 900.0
    bad = Reading(value=None, quality=Quality.BAD, ts_ms=0, reason="timeout")
    assert ramp_start(PUMP, 900.0, 0.0, bad) == 900.0
    assert ramp_start(PUMP, 900.0, 0.0, good(2000.0, 0)) == 1500.0  # clamped into the limits
    unlimited = Output("pump_speed", False, 0.0, 1500.0, None, 0.1)
    assert ramp_start(unlimited, 900.0, 0.0, good(500.0, 0)) == 900.0  # jumps anyway


def _readings(run: Run, k: int, pump: float | None) -> dict[str, Reading]:
    now = run.t0 + k * P
    rs = {"level": good(1.0, now), "high_level": good(False, now)}
    if pump is not None:
        rs["pump_speed"] = good(pump, now)
    return rs


def test_the_next_step_ramps_from_the_read_back_after_another_master_moved_the_pump() -> None:
    run = Run(tank())
    for k in range(45):  # fill ramps 0 -> 1200 at 30 rpm per 100 ms cycle
        run.at(k, readings=_readings(run, k, run.output("pump_speed") if k else 0.0))  # type: ignore[arg-type]
    assert run.output("pump_speed") == 1200
    r = run.at(45, readings={**_readings(run, 45, 500.0), "level": good(4.2, run.t0 + 45 * P)})
    assert [e.get("step") for e in r.events if e.kind is EventKind.STEP_ENTERED] == ["hold"]
    assert dict((w.point, w.value) for w in r.writes)["pump_speed"] == 470.0  # not 1200 - 30
    r = run.at(46, readings=_readings(run, 46, 470.0))
    assert dict((w.point, w.value) for w in r.writes)["pump_speed"] == 440.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=0.5, max_value=4.5), min_size=5, max_size=60))
def test_a_read_back_equal_to_the_last_command_changes_nothing(levels: list[float]) -> None:
    plain, echoed = Run(tank()), Run(tank())
    for k, level in enumerate(levels):
        a = plain.at(k, level)
        now = echoed.t0 + k * P
        rs = {"level": good(level, now), "high_level": good(False, now),
              "pump_speed": good(echoed.output("pump_speed"), now)}  # type: ignore[arg-type]
        b = echoed.at(k, readings=rs)
        assert (a.writes, a.state) == (b.writes, b.state)


def _resume(cmd_id: str) -> tuple[Command, ...]:
    return (Command(kind=CommandKind.RESUME, id=cmd_id),)


def test_a_refused_resume_is_an_event_with_its_cause_and_the_latch_holds_until_a_resume() -> None:
    run = Run(tank())
    run.upto(0, 5)
    run.at(5, readings={"high_level": good(False, run.t0 + 5 * P)})  # level missing: trip
    assert run.state.mode is Mode.SAFE
    r = run.at(6, 7.5, cmds=_resume("op-1"))  # out of range: the cause persists
    refused = [e for e in r.events if e.kind is EventKind.RESUME_REFUSED]
    assert [(e.get("command"), e.get("cause")) for e in refused] == [("op-1", "out_of_range:level")]
    run.upto(7, 300, 2.0)  # healthy for 30 s: automation never clears the latch
    assert run.state.mode is Mode.SAFE
    r = run.at(300, 2.0, cmds=_resume("op-2"))
    assert run.state.mode is Mode.RUNNING and not [e for e in r.events
                                                   if e.kind is EventKind.RESUME_REFUSED]


def test_a_good_resume_continues_at_the_step_the_trip_interrupted() -> None:
    run = Run(tank())
    run.upto(0, 3)
    run.at(3, 4.2)  # fill done: hold
    run.upto(4, 10, 4.2)
    run.at(10, readings={})  # everything missing: trip in hold
    run.at(11, 4.2, cmds=_resume("op"))
    assert run.state.mode is Mode.RUNNING
    assert run.engine.contract.steps[run.state.step_index].name == "hold"
    assert run.output("pump_speed") == 0 and run.output("valve_open") is False


def test_engine_state_has_no_new_fields_for_replay() -> None:
    # The read-back rides in the inputs (journaled), not in the state: old checkpoints still load.
    assert set(Engine(tank()).initial_state().to_mapping()) == {
        "v", "mode", "step_index", "step_started_ms", "outputs", "targets", "trip", "last_ms",
        "paused_ms"}
    assert Inputs().readings == {}
