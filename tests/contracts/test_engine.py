"""Rules of the pure engine, one test each, on the tank-fill example and small variants of it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.codec import canonical_dumps, loads
from contracts.engine import Engine, EngineState, Event, EventKind, Mode, StepResult, step
from contracts.errors import EncodingError
from contracts.inputs import Command, CommandKind, Inputs, Quality, Reading
from contracts.schema import Contract
from contracts.schema_parse import parse_contract
from contracts.types import Value

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
P = 100  # the example's scan period


def tank_doc() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "tank-fill.yaml").read_text())


def tank(**top: Any) -> Contract:
    doc = tank_doc()
    doc.update(top)
    return parse_contract(doc)


def good(value: Value, ts: int) -> Reading:
    return Reading(value=value, quality=Quality.GOOD, ts_ms=ts)


class Run:
    """Drives one engine, keeping every result."""

    def __init__(self, contract: Contract) -> None:
        self.engine = Engine(contract)
        self.state = self.engine.initial_state()
        self.t0 = contract.valid_from
        self.results: list[StepResult] = []

    def at(self, k: int, level: float = 1.0, *, readings: dict[str, Reading] | None = None,
           online: bool = True, contact: int | None = None, cmds: tuple[Command, ...] = ()) -> StepResult:
        now = self.t0 + k * P
        rs = readings if readings is not None else {"level": good(level, now),
                                                    "high_level": good(False, now)}
        r = self.engine.step(self.state, Inputs(readings=rs, online=online, last_contact_ms=contact,
                                                commands=cmds), now)
        self.state = r.state
        self.results.append(r)
        return r

    def upto(self, k0: int, k1: int, level: float = 1.0, *, every: int = 1,
             **kw: Any) -> list[StepResult]:
        """Cycles k0..k1-1; `every` > 1 skips cycles (the engine only needs time to advance)."""
        return [self.at(k, level, **kw) for k in range(k0, k1, every)]

    def output(self, name: str) -> Value:
        return dict(self.state.outputs)[name]


def kinds(r: StepResult) -> list[EventKind]:
    return [e.kind for e in r.events]


def cmd(kind: CommandKind, point: str | None = None, value: Value | None = None) -> Command:
    return Command(kind=kind, id=f"c-{kind.value}", point=point, value=value)


def first(r: StepResult, kind: EventKind) -> Event:
    return next(e for e in r.events if e.kind is kind)


def started() -> Run:
    run = Run(tank())
    run.upto(-3, 1)
    return run


def test_pending_before_valid_from_writes_nothing() -> None:
    run = Run(tank())
    for r in run.upto(-5, 0):
        assert (r.state.mode, r.writes, r.events) == (Mode.PENDING, (), ())


def test_start_enters_fill_and_ramps_pump_at_max_rate() -> None:
    run = Run(tank())
    run.upto(-2, 0)
    r = run.at(0)
    assert kinds(r) == [EventKind.STARTED, EventKind.STEP_ENTERED, EventKind.WRITE_RATE_LIMITED]
    assert dict((w.point, w.value) for w in r.writes) == {"pump_speed": 30.0, "valve_open": True}
    ramp = run.upto(1, 45)
    assert [w.value for x in ramp for w in x.writes][:3] == [60.0, 90.0, 120.0]  # 300 rpm/s * 0.1 s
    assert run.output("pump_speed") == 1200 and not ramp[-1].writes
    assert all(EventKind.WRITE_RATE_LIMITED not in kinds(x) for x in ramp)


def test_fill_ends_when_level_reaches_4_then_holds_3600_s_then_completes_safe() -> None:
    run = started()
    run.upto(1, 50, level=3.9)
    done = run.at(50, level=4.0)
    assert first(done, EventKind.STEP_DONE).fields[:3] == (("step", "fill"), ("index", 0),
                                                            ("reason", "until"))
    assert run.state.step_index == 1 and run.state.step_started_ms == run.t0 + 50 * P
    assert dict((w.point, w.value) for w in done.writes)["valve_open"] is False
    run.upto(51, 50 + 36_000, level=4.0, every=10)
    run.at(50 + 36_000 - 1, level=4.0)
    assert run.state.mode is Mode.RUNNING
    end = run.at(50 + 36_000, level=4.0)
    assert kinds(end)[:3] == [EventKind.STEP_DONE, EventKind.COMPLETED, EventKind.SAFE_STATE]
    assert run.state.mode is Mode.COMPLETED and run.output("pump_speed") == 0


def test_fill_timeout_fails_into_safe_state() -> None:
    run = started()
    run.upto(1, 18_000, every=10)
    run.at(17_999)
    assert run.state.mode is Mode.RUNNING
    r = run.at(18_000)
    assert kinds(r) == [EventKind.STEP_TIMEOUT, EventKind.FAILED, EventKind.SAFE_STATE]
    assert run.state.mode is Mode.FAILED and run.output("valve_open") is False


@pytest.mark.parametrize(("reading", "reason"), [
    (Reading(value=None, quality=Quality.BAD, ts_ms=0, reason="timeout"), "bad_quality"),
    (Reading(value=2.0, quality=Quality.GOOD, ts_ms=-2001), "stale"),
    (Reading(value=6.5, quality=Quality.GOOD, ts_ms=0), "out_of_range"),
    (None, "bad_quality"),
])
def test_unhealthy_level_trips_to_safe_state_in_the_same_cycle(reading: Reading | None,
                                                               reason: str) -> None:
    run = started()
    run.upto(1, 50)
    now = run.t0 + 50 * P
    rs = {"high_level": good(False, now)}
    if reading is not None:
        rs["level"] = Reading(value=reading.value, quality=reading.quality,
                              ts_ms=now + reading.ts_ms, reason=reading.reason)
    r = run.at(50, readings=rs)
    assert kinds(r) == [EventKind.GUARD_TRIP, EventKind.SAFE_STATE]
    assert first(r, EventKind.GUARD_TRIP).get("reason") == reason
    assert run.state.mode is Mode.SAFE and run.state.trip == reason
    assert {w.point: w.value for w in r.writes} == {"pump_speed": 0, "valve_open": False}


def test_reading_exactly_stale_after_ms_old_still_passes() -> None:
    run = started()
    now = run.t0 + P
    r = run.at(1, readings={"level": good(1.0, now - 2000), "high_level": good(False, now)})
    assert run.state.mode is Mode.RUNNING and EventKind.GUARD_TRIP not in kinds(r)


def test_trip_is_latched_until_resume_with_healthy_inputs_which_reenters_the_step() -> None:
    run = started()
    run.at(1, level=9.0)
    run.upto(2, 5, level=1.0)
    assert run.state.mode is Mode.SAFE
    refused = run.at(5, level=9.0, cmds=(cmd(CommandKind.RESUME),))
    assert first(refused, EventKind.COMMAND_REFUSED).get("reason") == "out_of_range"
    r = run.at(6, cmds=(cmd(CommandKind.RESUME),))
    assert kinds(r) == [EventKind.RESUMED, EventKind.STEP_ENTERED, EventKind.WRITE_RATE_LIMITED]
    assert run.state.mode is Mode.RUNNING and run.state.step_started_ms == run.t0 + 6 * P
    assert run.output("pump_speed") == 30.0


def test_expiry_puts_outputs_to_safe_state_and_refuses_commands() -> None:
    c = tank(valid_until="2026-11-24T06:00:10Z")
    run = Run(c)
    run.upto(0, 100)
    r = run.at(100, cmds=(cmd(CommandKind.RESUME),))
    assert kinds(r) == [EventKind.EXPIRED, EventKind.SAFE_STATE, EventKind.COMMAND_REFUSED]
    assert run.state.mode is Mode.EXPIRED and run.output("pump_speed") == 0


def test_autonomy_exhausted_goes_safe() -> None:
    run = Run(tank(offline={"autonomy_s": 60, "then": "safe_state"}))
    run.upto(0, 10)
    quiet = run.at(10, online=False, contact=run.t0 + 10 * P - 59_900)
    assert run.state.mode is Mode.RUNNING and not quiet.events
    r = run.at(11, online=False, contact=run.t0 + 11 * P - 60_000)
    assert kinds(r) == [EventKind.AUTONOMY_EXHAUSTED, EventKind.SAFE_STATE]
    assert run.state.trip == "autonomy" and run.output("valve_open") is False


def test_autonomy_hold_freezes_steps_until_online_and_shifts_the_step_clock() -> None:
    run = Run(tank(offline={"autonomy_s": 1, "then": "hold"}))
    run.upto(0, 10)
    r = run.at(10, online=False, contact=run.t0)
    assert kinds(r) == [EventKind.AUTONOMY_EXHAUSTED] and run.state.mode is Mode.OFFLINE_HOLD
    run.upto(11, 20_000, online=False, contact=run.t0, every=10)  # past the 1800 s fill timeout
    assert run.state.mode is Mode.OFFLINE_HOLD and run.output("pump_speed") == 1200
    back = run.at(20_000)
    assert kinds(back) == [EventKind.RESUMED]
    assert run.state.step_started_ms == run.t0 + (20_000 - 10) * P


def test_hold_pauses_the_step_clock_and_resume_continues_it() -> None:
    run = started()
    run.at(1, level=4.0)  # fill done -> hold step (3600 s) entered at k=1
    run.upto(2, 10, level=4.0)
    run.at(10, level=4.0, cmds=(cmd(CommandKind.HOLD),))
    run.upto(11, 1010, level=4.0)
    assert run.state.mode is Mode.HELD
    run.at(1010, level=4.0, cmds=(cmd(CommandKind.RESUME),))
    run.upto(1011, 1 + 36_000 + 1000, level=4.0, every=10)
    run.at(36_000 + 1000, level=4.0)
    assert run.state.mode is Mode.RUNNING
    assert kinds(run.at(1 + 36_000 + 1000, level=4.0))[0] is EventKind.STEP_DONE


def test_abort_goes_safe_and_ends_the_contract() -> None:
    run = started()
    run.upto(1, 10)
    r = run.at(10, cmds=(cmd(CommandKind.ABORT),))
    assert kinds(r) == [EventKind.ABORTED, EventKind.SAFE_STATE]
    later = run.at(11, cmds=(cmd(CommandKind.RESUME),))
    assert first(later, EventKind.COMMAND_REFUSED).get("reason") == "terminal"
    assert run.state.mode is Mode.ABORTED and run.output("pump_speed") == 0


def with_foreign_point() -> Contract:
    doc = tank_doc()
    doc["points"].append({"name": "drain", "table": "coil", "address": 14, "direction": "write",
                          "owner": "other"})
    return parse_contract(doc)


@pytest.mark.parametrize(("point", "value", "reason"), [
    ("nope", 1, "unknown_point"), ("level", 1.0, "read_point"), ("drain", True, "not_owner"),
    ("pump_speed", 1600, "out_of_limits"), ("pump_speed", True, "wrong_type"),
    ("valve_open", 1, "wrong_type"),
])
def test_manual_write_is_refused_with_its_reason(point: str, value: Value, reason: str) -> None:
    run = Run(with_foreign_point())
    run.upto(0, 60)  # ramp finished: any write now would come from the command
    r = run.at(60, cmds=(cmd(CommandKind.WRITE, point, value),))
    assert kinds(r) == [EventKind.COMMAND_REFUSED, EventKind.WRITE_REFUSED]
    assert first(r, EventKind.WRITE_REFUSED).get("reason") == reason and not r.writes


def test_manual_write_applies_as_target_until_the_next_step_entry() -> None:
    run = started()
    run.upto(1, 50)
    run.at(50, cmds=(cmd(CommandKind.WRITE, "pump_speed", 600),))
    run.upto(51, 70)
    assert run.output("pump_speed") == 600
    r = run.at(70, level=4.0)
    assert dict(run.state.targets)["pump_speed"] == 0 and r.writes[0].value == 570.0


def test_write_only_when_an_output_changes() -> None:
    run = started()
    steady = run.upto(1, 100)[50:]
    assert all(r.writes == () for r in steady)


def test_out_of_limit_do_value_is_clamped_and_journaled() -> None:
    doc = tank_doc()
    doc["steps"][0]["do"]["pump_speed"] = 2000
    run = Run(parse_contract(doc))
    r = run.at(0)
    assert first(r, EventKind.WRITE_CLAMPED).fields == (("point", "pump_speed"), ("value", 2000),
                                                         ("limit", 1500.0))
    assert dict(run.state.targets)["pump_speed"] == 1500.0


def test_unevaluable_until_is_an_engine_error_that_goes_safe() -> None:
    doc = tank_doc()
    doc["steps"][0]["until"] = "ghost > 1"
    run = Run(parse_contract(doc))
    run.at(0)
    r = run.at(1)  # a step entered at k=0 is first evaluated at k=1
    assert kinds(r) == [EventKind.ENGINE_ERROR, EventKind.SAFE_STATE]
    assert run.state.mode is Mode.SAFE and run.state.trip == "engine_error"


def test_a_state_from_another_contract_is_an_engine_error_not_an_exception() -> None:
    engine = Engine(tank())
    alien = EngineState(mode=Mode.RUNNING, outputs=(("x", 1),), targets=(("x", 1),))
    r = step(engine, alien, Inputs(), engine.contract.valid_from)
    assert kinds(r) == [EventKind.ENGINE_ERROR, EventKind.SAFE_STATE]
    assert {w.point for w in r.writes} == {"pump_speed", "valve_open"}


def test_state_round_trips_through_cbor_exactly() -> None:
    run = started()
    run.upto(1, 7)
    back = EngineState.from_mapping(loads(canonical_dumps(run.state.to_mapping())))
    assert back == run.state and back.outputs[0][1] == 210.0 and back.targets[0][1] == 1200


@pytest.mark.parametrize("change", [{"v": 2}, {"mode": "dancing"}, {"outputs": [["a"]]},
                                    {"step_index": True}])
def test_state_from_mapping_rejects_other_versions_and_bad_fields(change: dict[str, Any]) -> None:
    m = Engine(tank()).initial_state().to_mapping() | change
    with pytest.raises(EncodingError):
        EngineState.from_mapping(m)
