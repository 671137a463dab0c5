"""A `points:` document (what `fieldpact points import` writes): read back with the point rules."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts.errors import ContractInvalid
from contracts.limits import MAX_POINTS
from contracts.loader import load_contract
from contracts.points_fragment import parse, point_issues
from contracts.schema_serialize import point_to_brief

TANK = Path(__file__).resolve().parents[2] / "contracts" / "examples" / "tank-fill.yaml"


def _issues(document: Any) -> list[str]:
    with pytest.raises(ContractInvalid) as info:
        parse(document)
    return [str(i) for i in info.value.issues]


def _points() -> list[dict[str, Any]]:
    return [point_to_brief(p) for p in load_contract(TANK).points]


def test_the_points_of_a_contract_pass_the_point_rules_alone() -> None:
    assert point_issues(load_contract(TANK).points) == []


@pytest.mark.parametrize("document", [None, [], {"points": None}, {"points": {"level": 1}}])
def test_a_document_without_a_points_list_is_refused(document: Any) -> None:
    assert _issues(document) == ["points: must be a list of points"]


def test_too_many_points_are_refused_before_any_is_read() -> None:
    assert _issues({"points": [None] * (MAX_POINTS + 1)}) == [
        f"points: has {MAX_POINTS + 1} entries; at most {MAX_POINTS} are allowed"]


def test_structural_issues_name_the_point_path() -> None:
    points = _points()
    points[1]["address"] = "20001"
    assert _issues({"points": points}) == [
        "points[1].address: '20001' starts with 2, which names no table (a Modicon address is 5 or"
        " 6 digits: 0xxxx coil, 1xxxx discrete input, 3xxxx input register, 4xxxx holding"
        " register, numbered from 1); or the 0-based offset as an integer, with table"]


def test_rules_across_points_apply_but_not_those_needing_a_contract() -> None:
    points = _points()
    points[2]["owner"] = "another-contract"  # the owner rule needs the contract id: not judged
    points[3]["name"] = points[0]["name"]
    assert _issues({"points": points}) == [
        "points[3].name: duplicate point name 'level' (first at points[0])"]
