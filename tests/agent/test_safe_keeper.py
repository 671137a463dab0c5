"""SafeKeeper, the pure core of confirmed safe state: what to write and what to journal, per cycle."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.safe_state import SafeKeeper
from contracts.inputs import Quality, Reading
from contracts.schema import DataType, Direction, Point, Table

PUMP = Point(name="pump", unit_id=1, table=Table.HOLDING, address=20, type=DataType.UINT16,
             direction=Direction.WRITE, owner="c", scale=0.1)
VALVE = Point(name="valve", unit_id=1, table=Table.COIL, address=13, type=DataType.BOOL,
              direction=Direction.WRITE, owner="c")
SAFE = {"pump": 0, "valve": False}


def _r(pump: float | None, valve: bool | None) -> dict[str, Reading]:
    def one(v: float | bool | None) -> Reading:
        if v is None:
            return Reading(value=None, quality=Quality.BAD, ts_ms=0, reason="timeout")
        return Reading(value=v, quality=Quality.GOOD, ts_ms=0)
    return {"pump": one(pump), "valve": one(valve)}


def test_entry_journals_the_unconfirmed_points_and_confirmation_the_time_from_the_trip() -> None:
    k = SafeKeeper([PUMP, VALVE])
    write, items = k.cycle(SAFE, _r(900.0, True), 1000)
    assert write == ("pump", "valve")
    assert [b for _, b, _ in items] == [{"event": "safe_unconfirmed", "points": ["pump", "valve"],
                                        "since_ms": 1000, "attempts": 1}]
    assert k.cycle(SAFE, _r(None, None), 1100) == (("pump", "valve"), [])  # same set: silent
    write, items = k.cycle(SAFE, _r(900.0, False), 1200)
    assert write == ("pump",) and items[0][1]["points"] == ["pump"]  # the set changed
    write, items = k.cycle(SAFE, _r(0.04, False), 1300)  # within half a raw step of 0
    assert write == () and [b for _, b, _ in items] == [
        {"event": "safe_confirmed", "elapsed_ms": 300, "attempts": 3}]
    view = k.view()
    assert view is not None and view.state == "confirmed"


def test_a_point_moved_after_confirmation_opens_a_new_episode() -> None:
    k = SafeKeeper([PUMP, VALVE])
    k.cycle(SAFE, _r(0.0, False), 1000)
    write, items = k.cycle(SAFE, _r(800.0, False), 5000)
    assert write == ("pump",) and items[0][1] == {"event": "safe_unconfirmed", "points": ["pump"],
                                                  "since_ms": 5000, "attempts": 1}
    assert k.verify(SAFE, _r(0.0, False), 5000)[0][1]["elapsed_ms"] == 0


@given(st.lists(st.tuples(st.sampled_from([None, 0.0, 500.0]), st.sampled_from([None, False, True])),
                min_size=1, max_size=50))
def test_the_journal_gets_one_item_per_change_of_the_unconfirmed_set_never_one_per_cycle(
        reads: list[tuple[float | None, bool | None]]) -> None:
    k = SafeKeeper([PUMP, VALVE])
    sets, n_items = [], 0
    for i, (pump, valve) in enumerate(reads):
        write, items = k.cycle(SAFE, _r(pump, valve), i * 100)
        sets.append(write)
        n_items += len(items)
    changes = 1 + sum(1 for a, b in zip(sets, sets[1:]) if a != b)
    assert n_items == changes
