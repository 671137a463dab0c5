"""Semantic validation: the invalid corpus (exact issues), the examples, and rules in isolation."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.errors import ContractInvalid, Issue
from contracts.loader import load_contract
from contracts.schema import DataType, OnTimeout
from contracts.schema_parse import parse_contract
from contracts.validate import engineering_range, validate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "contracts" / "examples").glob("*.yaml"))
CORPUS = Path(__file__).parent / "invalid"
CASES = sorted(CORPUS.glob("*.yaml"))


def _tank() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "contracts" / "examples" / "tank-fill.yaml").read_text())


def _issues(m: dict[str, Any]) -> list[str]:
    return [str(i) for i in validate(parse_contract(m))]


def test_corpus_has_a_pair_for_every_case() -> None:
    assert len(CASES) >= 18
    assert {p.stem for p in CORPUS.glob("*.expected")} == {p.stem for p in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_invalid_contract_reports_exactly_the_expected_issues(case: Path) -> None:
    expected = case.with_suffix(".expected").read_text().splitlines()
    with pytest.raises(ContractInvalid) as info:
        load_contract(case)
    assert [str(i) for i in info.value.issues] == expected


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_shipped_examples_validate_clean(example: Path) -> None:
    contract = load_contract(example)
    assert validate(contract) == []


def test_issues_are_issue_values_with_path_and_reason() -> None:
    m = _tank()
    m["valid_until"] = m["valid_from"]
    [issue] = validate(parse_contract(m))
    assert isinstance(issue, Issue) and issue.path == "valid_until"


def test_negative_scale_flips_the_engineering_range() -> None:
    c = parse_contract(_tank())
    p = dataclasses.replace(c.point("pump_speed"), scale=-0.5, offset=10.0)
    assert engineering_range(p) == (-32757.5, 10.0)
    assert engineering_range(dataclasses.replace(p, type=DataType.INT16)) == (-16373.5, 16394.0)


def test_number_outside_type_capacity_is_refused_when_there_are_no_limits() -> None:
    m = _tank()
    del m["points"][2]["limits"]
    m["steps"][0]["do"]["pump_speed"] = 7000
    assert _issues(m) == ["steps[0].do.pump_speed: 7000 is outside what uint16 with scale 0.1 "
                          "and offset 0 can carry (0..6553.5)"]


def test_foreign_write_point_need_not_appear_in_safe_state() -> None:
    m = _tank()
    m["points"].append({"name": "mixer", "table": "coil", "address": 14, "direction": "write",
                        "owner": "tank-mix"})
    assert _issues(m) == []


def test_bool_point_takes_no_range_or_limits() -> None:
    m = _tank()
    m["points"][3]["limits"] = [0, 1]
    m["points"][1]["range"] = [0, 1]
    assert _issues(m) == ["points[1].range: does not apply to a bool point",
                          "points[3].limits: does not apply to a bool point"]


def test_registers_on_different_units_or_tables_do_not_overlap() -> None:
    m = _tank()
    m["points"].append({"name": "level2", "unit_id": 2, "table": "input", "address": 0,
                        "type": "float32", "direction": "read"})
    m["points"].append({"name": "level3", "table": "holding", "address": 0, "type": "float32",
                        "direction": "read"})
    m["points"].append({"name": "adjacent", "table": "input", "address": 2, "type": "uint16",
                        "direction": "read"})
    assert _issues(m) == []


def test_timer_of_exactly_two_scans_is_allowed() -> None:
    m = _tank()
    m["points"][0]["stale_after_ms"] = 200
    assert _issues(m) == []
    m["points"][0]["stale_after_ms"] = 199
    assert len(_issues(m)) == 1


def test_always_false_until_with_on_timeout_next_does_not_block_later_steps() -> None:
    m = _tank()
    m["steps"][0]["until"] = "not true"
    m["steps"][0]["on_timeout"] = OnTimeout.NEXT.value
    assert _issues(m) == ["steps[0].until: is always false: the step can only time out "
                          "(on_timeout: next)"]


def test_for_s_makes_an_always_false_until_harmless() -> None:
    m = _tank()
    m["steps"][0] = {"name": "fill", "until": "false", "for_s": 10}
    assert _issues(m) == []


def test_step_time_is_allowed_in_until() -> None:
    m = _tank()
    m["steps"][0]["until"] = "step_time >= 30 and not high_level"
    assert _issues(m) == []


def test_every_unknown_name_is_reported_in_order_of_appearance() -> None:
    m = _tank()
    m["steps"][0]["until"] = "b > 1 or a and b"
    assert _issues(m) == ["steps[0].until: names unknown point 'b'",
                          "steps[0].until: names unknown point 'a'"]


def test_constant_expression_that_always_fails_is_reported() -> None:
    m = _tank()
    m["steps"][0]["until"] = "1 / 0 > 1"
    assert _issues(m) == ["steps[0].until: can never be evaluated: division by zero (1 / 0) "
                          "in '1 / 0 > 1'"]


def test_expression_that_fails_only_for_some_inputs_is_left_to_run_time() -> None:
    m = _tank()
    m["steps"][0]["until"] = "level / level > 1"
    assert _issues(m) == []
