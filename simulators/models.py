"""Process models of the simulated devices: pure state, pure dynamics, and their register maps.

Rules of this module:
- A model is a frozen state dataclass in engineering units plus pure functions: `advance(state,
  dt_s)`, `values(state)` (every mapped point's engineering value) and `with_value(state, name, v)`
  (a client write, or a test forcing a reading). No I/O, no clock, no randomness here: the server
  supplies elapsed time, faults add noise on the way out.
- Register maps are `contracts.schema.Point` rows, so they can be compared field by field with the
  example contracts in contracts/examples/ (a test does exactly that).
- Written points keep the value the client wrote (so a read-back matches the write); the dynamics
  clamp to the physical range when they use it.
"""
from __future__ import annotations

import enum
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from contracts.schema import DataType, Direction, Order, Point, Table
from contracts.types import PointName, Value

_STRUCT = {
    DataType.INT16: "h", DataType.UINT16: "H", DataType.INT32: "i", DataType.UINT32: "I",
    DataType.FLOAT32: "f", DataType.FLOAT64: "d",
}
_INTEGER = frozenset({DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32})


def _point(name: str, table: Table, address: int, type_: DataType, direction: Direction,
           scale: float = 1.0) -> Point:
    return Point(name=name, unit_id=1, table=table, address=address, type=type_,
                 direction=direction, scale=scale)


def encode(point: Point, value: Value) -> list[int]:
    """Engineering value -> register words (big-endian words unless the point says otherwise).

    Integer types are rounded and clamped to their raw range, as a device's firmware would
    saturate. Raises ValueError for a bit point (bits are not registers)."""
    if point.table.is_bit:
        raise ValueError(f"{point.name}: bit point has no register encoding")
    raw = (float(value) - point.offset) / point.scale
    if point.type in _INTEGER:
        low, high = point.type.raw_range
        raw = int(min(max(round(raw), low), high))
    data = struct.pack(">" + _STRUCT[point.type], raw)
    if point.byte_order is Order.LITTLE:
        data = b"".join(data[i:i + 2][::-1] for i in range(0, len(data), 2))
    words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    return swap_words(words) if point.word_order is Order.LITTLE else words


def decode(point: Point, words: list[int]) -> float:
    """Register words -> engineering value; inverse of `encode`. Raises ValueError on a bad count."""
    if len(words) != point.type.registers:
        raise ValueError(f"{point.name}: needs {point.type.registers} words, got {len(words)}")
    ordered = swap_words(words) if point.word_order is Order.LITTLE else list(words)
    data = b"".join(w.to_bytes(2, "big") for w in ordered)
    if point.byte_order is Order.LITTLE:
        data = b"".join(data[i:i + 2][::-1] for i in range(0, len(data), 2))
    (raw,) = struct.unpack(">" + _STRUCT[point.type], data)
    return float(raw) * point.scale + point.offset


def swap_words(words: list[int]) -> list[int]:
    """Reverse the word order of a 32/64-bit value (the classic 'CDAB' vendor variation)."""
    return list(reversed(words))


class ProcessModel(Protocol):
    """What the server needs from a model; `S` is the model's own frozen state type."""

    name: str
    points: tuple[Point, ...]
    analog: tuple[tuple[PointName, float], ...]
    """Analog read points and their span, for noise and spikes."""

    def initial(self, overrides: Mapping[PointName, Value] | None = None) -> Any: ...
    def advance(self, state: Any, dt_s: float) -> Any: ...
    def values(self, state: Any) -> dict[PointName, Value]: ...
    def with_value(self, state: Any, name: PointName, value: Value) -> Any: ...


def _apply(state: Any, fields: Mapping[PointName, str], name: PointName, value: Value) -> Any:
    if name not in fields:
        raise KeyError(f"{name!r} is derived or unknown; settable: {', '.join(fields)}")
    current = getattr(state, fields[name])
    return replace(state, **{fields[name]: bool(value) if isinstance(current, bool) else float(value)})


def _with_overrides(model: ProcessModel, state: Any,
                    overrides: Mapping[PointName, Value] | None) -> Any:
    for name, value in (overrides or {}).items():
        state = model.with_value(state, name, value)
    return state


# ---------------------------------------------------------------------------------------------
# Tank: a pump fills it through a valve; it drains slowly otherwise.
# Map: contracts/examples/tank-fill.yaml

TANK_HEIGHT_M = 6.0
TANK_HIGH_LEVEL_M = 5.5
"""High-level switch position; discrete input 0 closes at or above it."""
TANK_MAX_RPM = 1500.0
TANK_FILL_M_PER_S = 0.02
"""Fill rate at full pump speed with the valve open."""
TANK_DRAIN_M_PER_S = 0.002


@dataclass(frozen=True, kw_only=True)
class TankState:
    level_m: float = 1.0
    pump_speed_rpm: float = 0.0
    valve_open: bool = False


class TankModel:
    name = "tank"
    points: tuple[Point, ...] = (
        _point("level", Table.INPUT, 0, DataType.FLOAT32, Direction.READ),
        _point("high_level", Table.DISCRETE, 0, DataType.BOOL, Direction.READ),
        _point("pump_speed", Table.HOLDING, 20, DataType.UINT16, Direction.WRITE, scale=0.1),
        _point("pump_speed_feedback", Table.HOLDING, 21, DataType.UINT16, Direction.READ, scale=0.1),
        _point("valve_open", Table.COIL, 13, DataType.BOOL, Direction.WRITE),
    )
    analog: tuple[tuple[PointName, float], ...] = (("level", TANK_HEIGHT_M),)
    _fields = {"level": "level_m", "pump_speed": "pump_speed_rpm", "valve_open": "valve_open"}

    def initial(self, overrides: Mapping[PointName, Value] | None = None) -> TankState:
        return _with_overrides(self, TankState(), overrides)  # type: ignore[no-any-return]

    def advance(self, state: TankState, dt_s: float) -> TankState:
        rpm = min(max(state.pump_speed_rpm, 0.0), TANK_MAX_RPM)
        if state.valve_open and rpm > 0:
            rate = rpm / TANK_MAX_RPM * TANK_FILL_M_PER_S
        else:
            rate = -TANK_DRAIN_M_PER_S
        level = min(max(state.level_m + rate * dt_s, 0.0), TANK_HEIGHT_M)
        return replace(state, level_m=level)

    def values(self, state: TankState) -> dict[PointName, Value]:
        return {
            "level": state.level_m, "high_level": state.level_m >= TANK_HIGH_LEVEL_M,
            "pump_speed": state.pump_speed_rpm, "pump_speed_feedback": state.pump_speed_rpm,
            "valve_open": state.valve_open,
        }

    def with_value(self, state: TankState, name: PointName, value: Value) -> TankState:
        """Set a point; raises KeyError for derived points (high_level, pump_speed_feedback)."""
        return _apply(state, self._fields, name, value)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# Pump skid: a booster pump. Pressure follows speed squared (affinity laws) through a first-order
# lag; flow follows speed, current follows speed cubed. Map: contracts/examples/pump-skid.yaml

SKID_MAX_RPM = 3000.0
SKID_MAX_BAR = 10.0
"""Discharge pressure at full speed: p = 10 * (n / 3000)^2 bar."""
SKID_TAU_S = 2.0
"""Time constant of the pressure build-up."""
SKID_START_DELAY_S = 1.0
"""The drive reports `running` this long after a run command with a speed above 0."""
_TIME_EPSILON_S = 1e-9
"""Sums of float tick lengths fall short (10 x 0.1 s = 0.9999999999999999 s)."""
SKID_MAX_FLOW_M3H = 180.0
SKID_IDLE_CURRENT_A = 4.0
SKID_LOAD_CURRENT_A = 36.0


@dataclass(frozen=True, kw_only=True)
class PumpSkidState:
    speed_setpoint: float = 0.0
    run_cmd: bool = False
    run_timer_s: float = 0.0
    pressure_bar: float = 0.0

    @property
    def running(self) -> bool:
        return self.run_timer_s >= SKID_START_DELAY_S - _TIME_EPSILON_S


class PumpSkidModel:
    name = "pump_skid"
    points: tuple[Point, ...] = (
        _point("discharge_pressure", Table.INPUT, 0, DataType.FLOAT32, Direction.READ),
        _point("motor_current", Table.INPUT, 2, DataType.INT16, Direction.READ, scale=0.1),
        _point("flow", Table.INPUT, 3, DataType.UINT16, Direction.READ, scale=0.1),
        _point("running", Table.DISCRETE, 0, DataType.BOOL, Direction.READ),
        _point("speed_setpoint", Table.HOLDING, 0, DataType.UINT16, Direction.WRITE),
        _point("run_cmd", Table.COIL, 0, DataType.BOOL, Direction.WRITE),
    )
    analog: tuple[tuple[PointName, float], ...] = (
        ("discharge_pressure", 16.0), ("motor_current", 60.0), ("flow", 200.0))
    _fields = {"speed_setpoint": "speed_setpoint", "run_cmd": "run_cmd",
               "discharge_pressure": "pressure_bar"}

    def initial(self, overrides: Mapping[PointName, Value] | None = None) -> PumpSkidState:
        return _with_overrides(self, PumpSkidState(), overrides)  # type: ignore[no-any-return]

    def advance(self, state: PumpSkidState, dt_s: float) -> PumpSkidState:
        speed = min(max(state.speed_setpoint, 0.0), SKID_MAX_RPM)
        commanded = state.run_cmd and speed > 0
        timer = min(state.run_timer_s + dt_s, SKID_START_DELAY_S) if commanded else 0.0
        state = replace(state, run_timer_s=timer)
        target = SKID_MAX_BAR * (speed / SKID_MAX_RPM) ** 2 if state.running else 0.0
        # Exact discretisation of dp/dt = (target - p) / tau: stable for any tick length.
        pressure = target + (state.pressure_bar - target) * math.exp(-dt_s / SKID_TAU_S)
        return replace(state, pressure_bar=pressure)

    def values(self, state: PumpSkidState) -> dict[PointName, Value]:
        # Effective speed from the lagged pressure, so flow and current lag with it.
        fraction = math.sqrt(max(state.pressure_bar, 0.0) / SKID_MAX_BAR)
        current = SKID_IDLE_CURRENT_A + SKID_LOAD_CURRENT_A * fraction ** 3 if state.running else 0.0
        return {
            "discharge_pressure": state.pressure_bar, "motor_current": current,
            "flow": SKID_MAX_FLOW_M3H * fraction, "running": state.running,
            "speed_setpoint": state.speed_setpoint, "run_cmd": state.run_cmd,
        }

    def with_value(self, state: PumpSkidState, name: PointName, value: Value) -> PumpSkidState:
        """Set a point; raises KeyError for derived points (running, flow, motor_current)."""
        return _apply(state, self._fields, name, value)  # type: ignore[no-any-return]


class ModelKind(enum.StrEnum):
    TANK = "tank"
    PUMP_SKID = "pump_skid"


MODELS: dict[ModelKind, ProcessModel] = {
    ModelKind.TANK: TankModel(), ModelKind.PUMP_SKID: PumpSkidModel()}


def model_for(name: str) -> ProcessModel:
    """The model called `name`; raises ValueError naming the known ones."""
    try:
        return MODELS[ModelKind(name)]
    except ValueError:
        known = ", ".join(k.value for k in ModelKind)
        raise ValueError(f"unknown model {name!r} (known: {known})") from None
