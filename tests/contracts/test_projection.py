"""Projection runs the engine forward on the `expect` model, fast and equal to stepping every cycle."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.engine import Engine, EventKind, Mode
from contracts.engine_state import EngineState
from contracts.inputs import Command, CommandKind, Inputs, Quality, Reading
from contracts.projection import CONFIDENCE_HORIZON_MS, confidence, project
from contracts.schema import Contract
from contracts.schema_parse import parse_contract

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
H = 3600 * 1000


def example(name: str, **top: Any) -> Contract:
    doc = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    doc.update(top)
    return parse_contract(doc)


def quick_tank() -> Contract:
    """Tank-fill with a fast process (3 m -> 4 m in 20 s) and a 30 s hold."""
    doc = yaml.safe_load((EXAMPLES / "tank-fill.yaml").read_text())
    doc["expect"]["level"]["rate_per_s"] = 0.05
    doc["steps"][1]["for_s"] = 30
    return parse_contract(doc)


def test_tank_24h_fills_to_4m_then_holds_an_hour_then_completes() -> None:
    c = example("tank-fill")
    p = project(c, None, c.valid_from, c.valid_from + 24 * H)
    kinds = [(e.kind, (e.ts_ms - c.valid_from) // 100) for e in p.transitions
             if e.kind is not EventKind.WRITE_RATE_LIMITED]
    # level starts at the range midpoint 3.0 and rises 0.002 m/s once the pump runs: ~500 s
    done = next(k for kind, k in kinds if kind is EventKind.STEP_DONE)
    assert 4990 <= done <= 5010
    assert kinds[-2:] == [(EventKind.COMPLETED, done + 36_000), (EventKind.SAFE_STATE, done + 36_000)]
    assert p.end_state.mode is Mode.COMPLETED
    assert p.end_state.last_ms == c.valid_from + 24 * H - 100  # the last of 864,000 cycles
    assert len([pt for pt in p.points if (pt.ts_ms - c.valid_from) % 60_000 == 0]) == 24 * 60


def test_projected_outputs_stay_in_limits_and_level_in_range() -> None:
    c = example("tank-fill")
    p = project(c, None, c.valid_from, c.valid_from + 2 * H, every_ms=1000)
    assert all(0 <= dict(pt.outputs)["pump_speed"] <= 1500 for pt in p.points)
    assert all(0 <= dict(pt.modelled)["level"] <= 6 for pt in p.points)
    assert dict(p.points[-1].modelled)["level"] == 4.0  # the model stopped when the valve closed


@pytest.mark.parametrize(("name", "initial", "hours"), [
    ("quick_tank", None, 0.05),
    ("booster", {"running": True, "flow": 0.0, "discharge_pressure": 0.0, "motor_current": 10}, 0.6),
    ("booster", {"running": False}, 0.05),
])
def test_strided_projection_equals_stepping_every_cycle(name: str, initial: dict[str, Any] | None,
                                                        hours: float) -> None:
    c = quick_tank() if name == "quick_tank" else example("pump-skid")
    end = c.valid_from + int(hours * H)
    args = dict(initial=initial, every_ms=5000)
    fast = project(c, None, c.valid_from - 1000, end, **args)
    slow = project(c, None, c.valid_from - 1000, end, max_stride_ms=c.scan_period_ms, **args)
    assert fast == slow
    assert len(fast.transitions) >= 4  # the horizon really crosses step boundaries


def test_booster_projection_walks_every_step() -> None:
    c = example("pump-skid")
    p = project(c, None, c.valid_from, c.valid_from + H,
                initial={"running": True, "flow": 0.0, "discharge_pressure": 0.0})
    entered = [e.get("step") for e in p.transitions if e.kind is EventKind.STEP_ENTERED]
    assert entered == ["start", "ramp", "hold_pressure", "ramp_down", "stop"]
    assert p.end_state.mode is Mode.COMPLETED


def test_projection_from_a_held_state_makes_no_progress() -> None:
    c = example("tank-fill")
    engine, now = Engine(c), c.valid_from
    state = engine.initial_state()
    for k, cmds in enumerate([(), (), (Command(kind=CommandKind.HOLD, id="h"),)]):
        t = now + k * 100
        rs = {"level": Reading(value=1.0, quality=Quality.GOOD, ts_ms=t),
              "high_level": Reading(value=False, quality=Quality.GOOD, ts_ms=t)}
        state = engine.step(state, Inputs(readings=rs, commands=cmds), t).state
    assert state.mode is Mode.HELD
    p = project(c, state, now + 300, now + 3 * H, initial={"level": 1.0})
    assert p.end_state.mode is Mode.HELD and p.end_state.step_index == 0
    # HELD pauses steps, not ramps: the pump ramp begun before the hold completes without events
    assert p.transitions == [] and dict(p.end_state.outputs)["pump_speed"] == 1200


def test_projection_past_valid_until_expires_into_safe_state() -> None:
    c = example("tank-fill", valid_until="2026-11-24T06:05:00Z")
    p = project(c, None, c.valid_from, c.valid_from + H, initial={"level": 1.0})
    assert [e.kind for e in p.transitions][-2:] == [EventKind.EXPIRED, EventKind.SAFE_STATE]
    assert p.transitions[-1].ts_ms == c.valid_until and p.end_state.mode is Mode.EXPIRED


def test_confidence_decays_with_horizon_and_unmodelled_inputs() -> None:
    c = example("tank-fill")  # level modelled, high_level not: half the read points unmodelled
    assert confidence(c, 0) == 0.75
    assert confidence(c, CONFIDENCE_HORIZON_MS) == 0.375
    assert confidence(c, 24 * H) < confidence(c, 2 * H)
    assert project(c, None, c.valid_from, c.valid_from + H).confidence == confidence(c, H)


def test_an_empty_horizon_returns_the_given_state() -> None:
    c = example("tank-fill")
    state = EngineState(mode=Mode.PENDING)
    p = project(c, state, c.valid_from, c.valid_from)
    assert (p.points, p.transitions, p.end_state) == ([], [], state)
