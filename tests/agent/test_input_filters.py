"""Signal guards (frozen, spike) and the deadband view fed to the engine."""
from __future__ import annotations

from agent.input_filters import InputView, InputGuards
from contracts.inputs import Quality, Reading
from contracts.schema import DataType, Direction, Point, Table


def _point(**kw: object) -> Point:
    base = dict(name="level", unit_id=1, table=Table.INPUT, address=0, type=DataType.FLOAT32,
                direction=Direction.READ)
    base.update(kw)
    return Point(**base)  # type: ignore[arg-type]


def _good(value: float, ts: int) -> Reading:
    return Reading(value=value, quality=Quality.GOOD, ts_ms=ts)


def test_exactly_repeated_value_is_marked_frozen_after_frozen_after_ms() -> None:
    guards = InputGuards([_point(frozen_after_ms=1000)])
    seen = [guards.apply({"level": _good(2.5, t)})["level"] for t in range(0, 1300, 100)]
    assert all(r.quality is Quality.GOOD for r in seen[:10])
    assert seen[10].quality is Quality.BAD and seen[10].reason == "frozen"


def test_a_value_that_jitters_is_never_frozen() -> None:
    guards = InputGuards([_point(frozen_after_ms=1000)])
    out = [guards.apply({"level": _good(2.5 + (t % 200) * 1e-6, t)})["level"] for t in range(0, 5000, 100)]
    assert all(r.quality is Quality.GOOD for r in out)


def test_change_faster_than_max_rate_is_a_spike() -> None:
    guards = InputGuards([_point(max_rate_per_s=0.5)])
    guards.apply({"level": _good(1.0, 0)})
    ok = guards.apply({"level": _good(1.04, 100)})["level"]
    spike = guards.apply({"level": _good(3.0, 200)})["level"]
    assert ok.quality is Quality.GOOD
    assert spike.quality is Quality.BAD and spike.reason == "spike"


def test_view_holds_value_within_deadband_and_journals_only_real_changes() -> None:
    view = InputView([_point(deadband=0.1)])
    fed, changes = view.update({"level": _good(1.0, 0)}, 0)
    assert changes["level"].value == 1.0
    fed, changes = view.update({"level": _good(1.05, 100)}, 100)
    assert changes == {} and fed["level"].value == 1.0 and fed["level"].ts_ms == 100
    fed, changes = view.update({"level": _good(1.2, 200)}, 200)
    assert changes["level"].value == 1.2 and fed["level"].value == 1.2


def test_quality_change_is_always_journaled_and_keyframe_journals_everything() -> None:
    view = InputView([_point(deadband=10.0)])
    view.update({"level": _good(1.0, 0)}, 0)
    bad = Reading(value=None, quality=Quality.BAD, ts_ms=100, reason="timeout")
    _, changes = view.update({"level": bad}, 100)
    assert changes["level"].reason == "timeout"
    _, changes = view.update({"level": bad}, 200, keyframe=True)
    assert "level" in changes


def test_the_view_feeds_the_journaled_value_itself_even_where_the_reading_compares_equal() -> None:
    """Replay feeds the engine what the journal holds (invariant 1): a held view keeps the
    journaled value exactly, its sign of zero and its type included, not the equal new reading."""
    view = InputView([_point(deadband=0.5), _point(name="count", type=DataType.UINT16, deadband=5)])
    view.update({"level": _good(0.0, 0), "count": Reading(value=7, quality=Quality.GOOD, ts_ms=0)}, 0)
    fed, changes = view.update({"level": _good(-0.0, 100),
                                "count": Reading(value=7.0, quality=Quality.GOOD, ts_ms=100)}, 100)
    assert changes == {}
    assert str(fed["level"].value) == "0.0" and fed["level"].ts_ms == 100
    assert type(fed["count"].value) is int and fed["count"].value == 7
    fed, _ = view.update({"level": _good(0.2, 200), "count": Reading(value=7, quality=Quality.GOOD,
                                                                     ts_ms=200)}, 200)
    assert fed["level"].value == 0.0 and fed["level"].ts_ms == fed["count"].ts_ms == 200
