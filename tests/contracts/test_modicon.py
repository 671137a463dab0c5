"""Modicon notation: conversions table-tested both ways, refusals word for word, and the rule as the
contract parser applies it (strings are Modicon, integers are 0-based offsets)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts import modicon
from contracts.errors import ContractInvalid
from contracts.loader import check_mapping, decode_yaml
from contracts.schema import Table
from contracts.schema_fields import Reader
from contracts.schema_parse import parse_contract
from contracts.schema_points import parse_point
from contracts.schema_serialize import point_to_mapping

TANK = Path(__file__).resolve().parents[2] / "contracts" / "examples" / "tank-fill.yaml"

CONVERSIONS = [  # (Modicon text, table, 0-based offset)
    ("40021", Table.HOLDING, 20),
    ("00013", Table.COIL, 12),
    ("30001", Table.INPUT, 0),
    ("10001", Table.DISCRETE, 0),
    ("40001", Table.HOLDING, 0),
    ("49999", Table.HOLDING, 9998),
    ("00001", Table.COIL, 0),
    ("400001", Table.HOLDING, 0),
    ("400021", Table.HOLDING, 20),
    ("410000", Table.HOLDING, 9999),
    ("465536", Table.HOLDING, 65535),
    ("300001", Table.INPUT, 0),
    ("100100", Table.DISCRETE, 99),
    ("065536", Table.COIL, 65535),
]

HELP = ("a Modicon address is 5 or 6 digits: 0xxxx coil, 1xxxx discrete input, 3xxxx input"
        " register, 4xxxx holding register, numbered from 1")

REFUSALS = [
    ("20", f"'20' is not a Modicon address ({HELP})"),
    ("4002", f"'4002' is not a Modicon address ({HELP})"),
    ("4000021", f"'4000021' is not a Modicon address ({HELP})"),
    ("4002a", f"'4002a' is not a Modicon address ({HELP})"),
    ("-4002", f"'-4002' is not a Modicon address ({HELP})"),
    ("４００２１", f"'４００２１' is not a Modicon address ({HELP})"),
    ("", f"'' is not a Modicon address ({HELP})"),
    ("20001", f"'20001' starts with 2, which names no table ({HELP})"),
    ("50001", f"'50001' starts with 5, which names no table ({HELP})"),
    ("40000", "'40000' has register number 0; 5-digit addresses number 1..9999"),
    ("400000", "'400000' has register number 0; 6-digit addresses number 1..65536"),
    ("465537", "'465537' has register number 65537; 6-digit addresses number 1..65536"),
]


@pytest.mark.parametrize(("text", "table", "offset"), CONVERSIONS)
def test_modicon_address_names_its_table_and_zero_based_offset(text: str, table: Table,
                                                                offset: int) -> None:
    assert modicon.parse(text) == modicon.Reference(table=table, offset=offset)


@pytest.mark.parametrize(("text", "reason"), REFUSALS)
def test_text_that_is_not_a_modicon_address_is_refused_saying_why(text: str, reason: str) -> None:
    with pytest.raises(modicon.NotModicon) as info:
        modicon.parse(text)
    assert str(info.value) == reason


@pytest.mark.parametrize(("table", "offset", "text"), [
    (Table.HOLDING, 20, "40021"), (Table.COIL, 12, "00013"), (Table.INPUT, 0, "30001"),
    (Table.DISCRETE, 0, "10001"), (Table.HOLDING, 9998, "49999"), (Table.HOLDING, 9999, "410000"),
    (Table.HOLDING, 65535, "465536"), (Table.COIL, 65535, "065536"),
])
def test_format_writes_five_digits_where_they_reach_and_six_beyond(table: Table, offset: int,
                                                                   text: str) -> None:
    assert modicon.format(table, offset) == text
    assert modicon.parse(text) == modicon.Reference(table=table, offset=offset)


def test_every_offset_of_every_table_round_trips() -> None:
    for table in Table:
        for offset in range(0, 0x10000):
            assert modicon.parse(modicon.format(table, offset)).offset == offset


def test_format_refuses_an_offset_past_sixteen_bits() -> None:
    with pytest.raises(ValueError, match="outside 0..65535"):
        modicon.format(Table.HOLDING, 65536)


def test_describe_shows_both_notations() -> None:
    assert modicon.describe(Table.HOLDING, 20) == "holding 20 (40021)"


def _point(**fields: Any) -> tuple[Any, list[str]]:
    r = Reader()
    doc = {"name": "pump_speed", "type": "uint16", "direction": "read"} | fields
    return parse_point(r, doc, "points[0]"), [str(i) for i in r.issues]


@pytest.mark.parametrize(("text", "table", "offset"), CONVERSIONS)
def test_a_point_address_in_modicon_notation_gives_the_table(text: str, table: Table,
                                                             offset: int) -> None:
    point, issues = _point(address=text, type="bool" if table.is_bit else "uint16")
    assert issues == []
    assert (point.table, point.address) == (table, offset)


def test_a_modicon_address_agreeing_with_the_declared_table_is_accepted() -> None:
    point, issues = _point(table="holding", address="40021")
    assert issues == [] and (point.table, point.address) == (Table.HOLDING, 20)


def test_a_modicon_prefix_contradicting_the_declared_table_is_refused_at_address() -> None:
    point, issues = _point(table="coil", address="40021", type="bool")
    assert point is None
    assert issues == [
        "points[0].address: Modicon '40021' is holding 20 (40021), but the point's table is coil"]


def test_an_integer_address_is_the_zero_based_offset_never_modicon() -> None:
    point, issues = _point(table="holding", address=40021)
    assert issues == [] and (point.table, point.address) == (Table.HOLDING, 40021)


def test_an_integer_address_still_needs_its_table() -> None:
    point, issues = _point(address=20)
    assert point is None and issues == ["points[0].table: is required"]


def test_a_point_address_text_that_is_not_modicon_is_refused_naming_both_forms() -> None:
    point, issues = _point(address="20")
    assert point is None
    assert issues == [f"points[0].address: '20' is not a Modicon address ({HELP}); or the 0-based"
                      " offset as an integer, with table"]


def test_a_modicon_point_is_written_back_as_table_and_offset() -> None:
    point, _ = _point(address="400021")
    doc = point_to_mapping(point)
    assert (doc["table"], doc["address"]) == ("holding", 20)


def test_a_contract_with_a_contradicting_modicon_address_is_invalid() -> None:
    doc = yaml.safe_load(TANK.read_text())
    doc["points"][2]["address"] = "00021"
    with pytest.raises(ContractInvalid) as info:
        parse_contract(doc)
    assert [str(i) for i in info.value.issues] == [
        "points[2].address: Modicon '00021' is coil 20 (00021), but the point's table is holding"]


def test_an_unquoted_leading_zero_address_in_yaml_is_modicon_not_octal() -> None:
    text = TANK.read_text().replace("table: coil, address: 13,", "address: 00014,")
    assert "address: 00014" in text
    assert check_mapping(decode_yaml(text, "tank.yaml")).point("valve_open").address == 13


@pytest.mark.parametrize("written", ["0100", "0x64", "1:40"])
def test_yaml_integers_are_decimal_only(written: str) -> None:
    text = TANK.read_text().replace("scan_period_ms: 100", f"scan_period_ms: {written}")
    with pytest.raises(ContractInvalid) as info:
        check_mapping(decode_yaml(text, "tank.yaml"))
    assert [str(i) for i in info.value.issues] == [
        f"scan_period_ms: must be an integer, got '{written}'"]
