"""Write conflicts between contracts on one device (contracts/conflicts.py) — pure."""
from __future__ import annotations

from typing import Any

from contracts.conflicts import describe, write_conflicts
from contracts.schema import Contract
from contracts.schema_parse import parse_contract
from tests.contracts.test_engine import tank_doc


def _contract(name: str, **pump: Any) -> Contract:
    doc = tank_doc()
    doc["contract"] = name
    for p in doc["points"]:
        if p.get("direction") == "write":
            p["owner"] = name
        if p["name"] == "pump_speed":
            p.update(pump)
    return parse_contract(doc)


def test_overlapping_write_points_are_named_with_both_contracts() -> None:
    a, b = _contract("tank-fill"), _contract("tank-boost")
    found = write_conflicts(b, [a])
    assert [(o.other, o.point, o.other_point) for o in found] == [
        ("tank-fill@3", "pump_speed", "pump_speed"), ("tank-fill@3", "valve_open", "valve_open")]
    assert describe(b, found) == ("tank-boost@3 write points overlap tank-fill@3: pump_speed "
                                  "overlaps pump_speed of tank-fill@3; valve_open overlaps "
                                  "valve_open of tank-fill@3")


def test_another_version_of_the_same_contract_and_another_endpoint_never_conflict() -> None:
    a = _contract("tank-fill")
    assert write_conflicts(a, [a]) == []
    b = _contract("tank-boost", endpoint="plc2")
    assert [o.point for o in write_conflicts(b, [a])] == ["valve_open"]  # the pump is elsewhere
