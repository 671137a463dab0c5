"""Read-back divergence: a second Modbus master is alarmed once, and cleared once."""
from __future__ import annotations

from agent.readback import ReadbackMonitor
from contracts.inputs import Quality, Reading
from contracts.schema import DataType, Direction, Point, Table

SPEED = Point(name="pump_speed", unit_id=1, table=Table.HOLDING, address=20, type=DataType.UINT16,
              direction=Direction.WRITE, owner="tank-fill", scale=0.1)


def _r(v: float) -> Reading:
    return Reading(value=v, quality=Quality.GOOD, ts_ms=0)


def test_foreign_write_is_reported_once_then_cleared() -> None:
    mon = ReadbackMonitor([SPEED])
    assert mon.check({"pump_speed": 1200.0}, {"pump_speed": _r(1200.0)}, []) == []
    first = mon.check({"pump_speed": 1200.0}, {"pump_speed": _r(300.0)}, [])
    again = mon.check({"pump_speed": 1200.0}, {"pump_speed": _r(300.0)}, [])
    cleared = mon.check({"pump_speed": 1200.0}, {"pump_speed": _r(1200.0)}, [])
    assert [(d.point, d.actual, d.cleared) for d in first] == [("pump_speed", 300.0, False)]
    assert again == []
    assert [d.cleared for d in cleared] == [True]


def test_point_written_this_cycle_and_rounding_within_half_a_step_are_not_divergence() -> None:
    mon = ReadbackMonitor([SPEED])
    assert mon.check({"pump_speed": 1200.0}, {"pump_speed": _r(0.0)}, ["pump_speed"]) == []
    assert mon.check({"pump_speed": 1200.04}, {"pump_speed": _r(1200.0)}, []) == []
