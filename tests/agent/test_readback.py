"""Read-back divergence: judged against what the device acknowledged, never against a command that
failed; a second Modbus master is alarmed once, and cleared once."""
from __future__ import annotations

from agent.readback import ReadbackMonitor
from contracts.inputs import Quality, Reading
from contracts.schema import DataType, Direction, Point, Table

SPEED = Point(name="pump_speed", unit_id=1, table=Table.HOLDING, address=20, type=DataType.UINT16,
              direction=Direction.WRITE, owner="tank-fill", scale=0.1)


def _r(v: float) -> dict[str, Reading]:
    return {"pump_speed": Reading(value=v, quality=Quality.GOOD, ts_ms=0)}


def test_foreign_write_after_an_acknowledged_write_is_reported_once_then_cleared() -> None:
    mon = ReadbackMonitor([SPEED])
    mon.acknowledged("pump_speed", 1200.0)
    assert mon.check(_r(1200.0)) == []
    first = mon.check(_r(300.0))
    again = mon.check(_r(300.0))
    cleared = mon.check(_r(1200.0))
    assert [(d.point, d.expected, d.actual, d.cleared) for d in first] == [
        ("pump_speed", 1200.0, 300.0, False)]
    assert again == []
    assert [d.cleared for d in cleared] == [True]


def test_rounding_within_half_a_raw_step_is_not_divergence() -> None:
    mon = ReadbackMonitor([SPEED])
    mon.acknowledged("pump_speed", 1200.04)
    assert mon.check(_r(1200.0)) == []


def test_a_failed_write_to_a_safe_value_is_not_a_second_writer() -> None:
    """The field failure: our safe write never reached the device, which still shows our earlier
    (acknowledged) command. That is an unconfirmed safe state, not another master."""
    mon = ReadbackMonitor([SPEED])
    mon.acknowledged("pump_speed", 1000.0)
    mon.failed("pump_speed", "disconnected")  # the write of 0 rpm: "link is down"
    assert mon.check(_r(1000.0)) == []
    assert mon.diverged == frozenset()


def test_a_timed_out_write_is_settled_by_the_next_read_back_without_an_alarm() -> None:
    mon = ReadbackMonitor([SPEED])
    mon.acknowledged("pump_speed", 1000.0)
    mon.failed("pump_speed", "timeout")  # may or may not have landed
    assert mon.applied("pump_speed") is None
    assert mon.check(_r(0.0)) == []  # it landed: now the applied value
    assert mon.check(_r(700.0))[0].expected == 0.0  # and a later change is a second writer


def test_before_any_write_the_first_read_back_is_the_baseline() -> None:
    mon = ReadbackMonitor([SPEED])
    assert mon.check(_r(500.0)) == []
    assert [d.actual for d in mon.check(_r(600.0))] == [600.0]


def test_a_bad_read_back_is_not_judged() -> None:
    mon = ReadbackMonitor([SPEED])
    mon.acknowledged("pump_speed", 1000.0)
    bad = {"pump_speed": Reading(value=None, quality=Quality.BAD, ts_ms=0, reason="timeout")}
    assert mon.check(bad) == []
