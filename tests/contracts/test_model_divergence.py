"""Live model divergence, pure (contracts/model_divergence.py): time and readings in, findings out."""
from __future__ import annotations

from dataclasses import replace

import pytest

from contracts.engine_state import EngineState, Mode
from contracts.inputs import Quality, Reading
from contracts.loader import check_mapping
from contracts.model_divergence import ModelWatch
from tests.agent.conftest import tank_document

CONTRACT = check_mapping(tank_document(
    expect={"level": {"rate_per_s": 0.01, "when": "pump_speed > 0 and valve_open"}},
    tolerance={"timing_s": 300, "values": {"level": 0.1}}))
FILLING = replace(EngineState(mode=Mode.RUNNING, step_index=0, step_started_ms=0),
                  outputs=(("pump_speed", 1000), ("valve_open", True)))


def level(v: float, ms: int, quality: Quality = Quality.GOOD) -> dict[str, Reading]:
    return {"level": Reading(value=v if quality is Quality.GOOD else None, quality=quality, ts_ms=ms)}


def run(watch: ModelWatch, state: EngineState, values: list[tuple[int, float]]) -> list[tuple[int, str]]:
    out = []
    for ms, v in values:
        out += [(ms, "model_divergence" if f.diverged else "model_divergence_cleared")
                for f in watch.observe(state, level(v, ms), ms)]
    return out


def test_a_level_falling_while_the_pump_is_commanded_diverges_after_the_configured_time() -> None:
    watch = ModelWatch(CONTRACT, after_s=2.0)
    falling = [(ms, 1.0 - 0.002 * ms / 1000) for ms in range(0, 20_000, 100)]
    found = run(watch, FILLING, falling)
    # error = 0.012 m/s * t: beyond 0.1 m from t = 8.4 s, for 2 s: raised at 10.4 s, once.
    assert found == [(10_400, "model_divergence")]


def test_the_finding_says_what_the_model_expected_and_what_was_commanded() -> None:
    watch = ModelWatch(CONTRACT, after_s=0.0)
    watch.observe(FILLING, level(1.0, 0), 0)
    (f,) = watch.observe(FILLING, level(0.98, 20_000), 20_000)
    assert f.fields == {
        "point": "level", "expected": pytest.approx(1.2), "actual": 0.98, "error": pytest.approx(-0.22),
        "tolerance": 0.1, "rate_per_s": 0.01, "window_s": 20.0, "beyond_s": 0.0,
        "when": "pump_speed > 0 and valve_open", "commanded": {"pump_speed": 1000, "valve_open": True}}


def test_a_process_following_the_model_never_diverges() -> None:
    watch = ModelWatch(CONTRACT, after_s=1.0)
    rising = [(ms, 1.0 + 0.0105 * ms / 1000) for ms in range(0, 60_000, 100)]  # 5 % fast: within 0.1 m
    assert run(watch, FILLING, rising) == []


def test_a_process_faster_than_the_model_is_not_a_divergence_but_one_going_the_other_way_is() -> None:
    fast = [(ms, 1.0 + 0.05 * ms / 1000) for ms in range(0, 60_000, 100)]
    assert run(ModelWatch(CONTRACT, after_s=1.0), FILLING, fast) == []
    draining = check_mapping(tank_document(
        expect={"level": {"rate_per_s": -0.01, "when": "pump_speed > 0"}},
        tolerance={"timing_s": 300, "values": {"level": 0.1}}))
    rising = [(ms, 3.0 + 0.01 * ms / 1000) for ms in range(0, 10_000, 100)]  # error 0.02 m/s
    assert run(ModelWatch(draining, after_s=1.0), FILLING, rising) == [(6_100, "model_divergence")]


def test_the_prediction_is_clamped_into_the_range_so_a_full_tank_does_not_diverge() -> None:
    watch = ModelWatch(CONTRACT, after_s=1.0)
    capped = [(ms, min(5.9 + 0.01 * ms / 1000, 6.0)) for ms in range(0, 60_000, 100)]
    assert run(watch, FILLING, capped) == []


def test_the_check_waits_while_the_when_does_not_hold_or_the_contract_is_not_running() -> None:
    pump_off = replace(FILLING, outputs=(("pump_speed", 0), ("valve_open", True)))
    safe = replace(FILLING, mode=Mode.SAFE)
    flat = [(ms, 1.0) for ms in range(0, 30_000, 100)]
    assert run(ModelWatch(CONTRACT, 1.0), pump_off, flat) == []
    assert run(ModelWatch(CONTRACT, 1.0), safe, flat) == []


def test_a_window_restarts_when_the_model_stops_applying() -> None:
    watch = ModelWatch(CONTRACT, after_s=1.0)
    pump_off = replace(FILLING, outputs=(("pump_speed", 0), ("valve_open", True)))
    for ms in range(0, 9_000, 100):  # 9 s of a flat level: 0.09 m short, not yet beyond
        assert not watch.observe(FILLING, level(1.0, ms), ms)
    watch.observe(pump_off, level(1.0, 9_000), 9_000)
    assert run(watch, FILLING, [(ms, 1.0) for ms in range(9_100, 18_000, 100)]) == []


def test_a_bad_reading_is_not_judged_and_restarts_the_window() -> None:
    watch = ModelWatch(CONTRACT, after_s=1.0)
    for ms in range(0, 30_000, 100):
        quality = Quality.BAD if ms % 5_000 == 0 else Quality.GOOD
        assert not watch.observe(FILLING, level(1.0, ms, quality), ms)


def test_back_within_tolerance_clears_once() -> None:
    watch = ModelWatch(CONTRACT, after_s=0.5)
    values = [(0, 1.0)] + [(ms, 0.985) for ms in range(100, 12_000, 100)]  # beyond from 8.6 s
    values += [(ms, 1.0 + 0.01 * ms / 1000) for ms in range(12_000, 14_000, 100)]  # catches up
    assert run(watch, FILLING, values) == [(9_100, "model_divergence"),
                                           (12_000, "model_divergence_cleared")]


def test_an_expectation_without_a_tolerance_is_not_judged() -> None:
    contract = replace(CONTRACT, tolerance=replace(CONTRACT.tolerance, values=()))
    assert ModelWatch(contract).watched == ()
