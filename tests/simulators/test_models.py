"""Pure tests of the process models and their register encoding."""
from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from contracts.schema import DataType, Direction, Order, Point, Table
from contracts.schema_parse import parse_contract
from simulators.models import (
    TANK_DRAIN_M_PER_S, PumpSkidModel, TankModel, decode, encode, model_for, swap_words,
)

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
tank, skid = TankModel(), PumpSkidModel()


def _run(model, state, seconds: float, dt: float = 0.1):
    for _ in range(round(seconds / dt)):
        state = model.advance(state, dt)
    return state


def test_tank_fills_at_full_rate_with_valve_open_and_pump_at_full_speed() -> None:
    state = tank.initial({"level": 1.0, "valve_open": True, "pump_speed": 1500})
    assert tank.advance(state, 10.0).level_m == pytest.approx(1.2)


def test_tank_fill_rate_is_proportional_to_pump_speed() -> None:
    state = tank.initial({"level": 1.0, "valve_open": True, "pump_speed": 750})
    assert tank.advance(state, 10.0).level_m == pytest.approx(1.1)


@pytest.mark.parametrize("valve_open, rpm", [(False, 1500), (True, 0), (False, 0)])
def test_tank_drains_unless_valve_open_and_pump_running(valve_open: bool, rpm: float) -> None:
    state = tank.initial({"level": 3.0, "valve_open": valve_open, "pump_speed": rpm})
    assert tank.advance(state, 10.0).level_m == pytest.approx(3.0 - 10 * TANK_DRAIN_M_PER_S)


def test_tank_level_stays_within_zero_and_six_metres() -> None:
    full = tank.initial({"level": 5.99, "valve_open": True, "pump_speed": 1500})
    empty = tank.initial({"level": 0.001})
    assert tank.advance(full, 100.0).level_m == 6.0
    assert tank.advance(empty, 100.0).level_m == 0.0


def test_tank_high_level_switch_closes_at_five_and_a_half_metres() -> None:
    assert tank.values(tank.initial({"level": 5.5}))["high_level"] is True
    assert tank.values(tank.initial({"level": 5.49}))["high_level"] is False


def test_tank_speed_feedback_mirrors_the_written_speed() -> None:
    assert tank.values(tank.initial({"pump_speed": 1234.5}))["pump_speed_feedback"] == 1234.5


def test_derived_points_cannot_be_set() -> None:
    with pytest.raises(KeyError, match="high_level"):
        tank.with_value(tank.initial(), "high_level", True)


def test_pump_reports_running_one_second_after_run_command_with_speed() -> None:
    state = skid.initial({"run_cmd": True, "speed_setpoint": 1500})
    assert not skid.values(_run(skid, state, 0.9))["running"]
    assert skid.values(_run(skid, state, 1.0))["running"]


def test_pump_never_runs_at_zero_speed_and_stops_at_once_on_run_command_off() -> None:
    assert not skid.values(_run(skid, skid.initial({"run_cmd": True}), 5.0))["running"]
    running = _run(skid, skid.initial({"run_cmd": True, "speed_setpoint": 1500}), 2.0)
    stopped = skid.advance(replace(running, run_cmd=False), 0.1)
    assert not skid.values(stopped)["running"]


def test_pump_pressure_follows_speed_squared_through_a_two_second_lag() -> None:
    started = _run(skid, skid.initial({"run_cmd": True, "speed_setpoint": 3000}), 1.0)
    after_tau = skid.advance(started, 2.0)
    assert started.pressure_bar < 1.0
    assert after_tau.pressure_bar == pytest.approx(10.0 - (10.0 - started.pressure_bar) * 0.36788, rel=1e-4)
    settled = skid.advance(started, 60.0)
    assert skid.values(settled)["discharge_pressure"] == pytest.approx(10.0)
    assert skid.values(settled)["flow"] == pytest.approx(180.0)
    assert skid.values(settled)["motor_current"] == pytest.approx(40.0)


def test_pump_at_half_speed_makes_a_quarter_of_the_pressure() -> None:
    settled = _run(skid, skid.initial({"run_cmd": True, "speed_setpoint": 1500}), 30.0)
    assert skid.values(settled)["discharge_pressure"] == pytest.approx(2.5, rel=1e-3)


@pytest.mark.parametrize("model, example", [(tank, "tank-fill.yaml"), (skid, "pump-skid.yaml")])
def test_register_map_matches_the_example_contract(model, example: str) -> None:
    contract = parse_contract(yaml.safe_load((EXAMPLES / example).read_text()))
    ours = {p.name: p for p in model.points}
    for theirs in contract.points:
        mine = ours[theirs.name]
        fields = ("unit_id", "table", "address", "type", "scale", "offset", "word_order", "byte_order")
        assert {f: getattr(mine, f) for f in fields} == {f: getattr(theirs, f) for f in fields}
        assert mine.direction is theirs.direction


def test_unknown_model_is_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="tank, pump_skid"):
        model_for("boiler")


def _reg_point(type_: DataType, word: Order = Order.BIG, byte: Order = Order.BIG,
               scale: float = 1.0) -> Point:
    return Point(name="p", unit_id=1, table=Table.INPUT, address=0, type=type_,
                 direction=Direction.READ, word_order=word, byte_order=byte, scale=scale)


def test_float32_big_endian_encoding_is_the_ieee_bytes_in_order() -> None:
    assert encode(_reg_point(DataType.FLOAT32), 2.5) == [0x4020, 0x0000]
    assert encode(_reg_point(DataType.FLOAT32, word=Order.LITTLE), 2.5) == [0x0000, 0x4020]
    assert encode(_reg_point(DataType.FLOAT32, byte=Order.LITTLE), 2.5) == [0x2040, 0x0000]


def test_scaled_integer_is_rounded_and_saturated_like_firmware() -> None:
    assert encode(_reg_point(DataType.UINT16, scale=0.1), 1200.04) == [12000]
    assert encode(_reg_point(DataType.UINT16), -5) == [0]
    assert encode(_reg_point(DataType.INT16, scale=0.1), -3.2) == [struct.unpack(">H", struct.pack(">h", -32))[0]]


@given(st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from(Order), st.sampled_from(Order),
       st.sampled_from([DataType.FLOAT32, DataType.FLOAT64]))
def test_decode_inverts_encode_for_every_byte_and_word_order(value: float, word: Order,
                                                             byte: Order, type_: DataType) -> None:
    point = _reg_point(type_, word, byte)
    expected = struct.unpack(">f", struct.pack(">f", value))[0] if type_ is DataType.FLOAT32 else value
    assert decode(point, encode(point, value)) == expected


def test_swapping_words_of_a_big_endian_float_gives_the_little_word_order_encoding() -> None:
    big, little = _reg_point(DataType.FLOAT32), _reg_point(DataType.FLOAT32, word=Order.LITTLE)
    assert decode(little, swap_words(encode(big, 4.2))) == pytest.approx(4.2)
