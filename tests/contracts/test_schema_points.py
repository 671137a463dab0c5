"""A contract's point rows: the optional `endpoint` (syntax only), and the encoding it leaves alone."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from contracts.codec import decode_contract, encode_contract
from contracts.errors import ContractInvalid
from contracts.loader import load_contract
from contracts.schema_parse import parse_contract
from contracts.schema_serialize import point_to_brief, point_to_mapping, to_mapping

TANK = Path(__file__).resolve().parents[2] / "contracts" / "examples" / "tank-fill.yaml"


def test_a_point_names_no_endpoint_by_default() -> None:
    assert all(p.endpoint is None for p in load_contract(TANK).points)


def test_a_point_without_an_endpoint_encodes_as_before_the_field_existed() -> None:
    contract = load_contract(TANK)
    assert all("endpoint" not in point for point in to_mapping(contract)["points"])


def test_an_endpoint_survives_the_signed_encoding() -> None:
    contract = load_contract(TANK)
    level = dataclasses.replace(contract.points[0], endpoint="rs485-line1")
    named = dataclasses.replace(contract, points=(level, *contract.points[1:]))
    assert point_to_mapping(level)["endpoint"] == "rs485-line1"
    assert decode_contract(encode_contract(named)) == named
    assert encode_contract(named) != encode_contract(contract)


@pytest.mark.parametrize(("endpoint", "reason"), [
    ("Main PLC", "'Main PLC' must be lowercase letters, digits, '.', '_' or '-' (max 64)"),
    ("plc/1", "'plc/1' must be lowercase letters, digits, '.', '_' or '-' (max 64)"),
    (3, "must be a string, got 3"),
])
def test_an_endpoint_that_is_not_an_id_is_refused_at_its_path(endpoint: object, reason: str) -> None:
    doc = to_mapping(load_contract(TANK))
    doc["points"][1]["endpoint"] = endpoint
    with pytest.raises(ContractInvalid) as info:
        parse_contract(doc)
    assert [str(i) for i in info.value.issues] == [f"points[1].endpoint: {reason}"]


def test_the_brief_form_leaves_out_defaults_and_reads_back_the_same() -> None:
    contract = load_contract(TANK)
    valve = contract.point("valve_open")
    assert point_to_brief(valve) == {"name": "valve_open", "table": "coil", "address": 13,
                                     "direction": "write", "owner": "tank-fill"}
    doc = to_mapping(contract)
    doc["points"] = [point_to_brief(p) for p in contract.points]
    assert parse_contract(doc) == contract
