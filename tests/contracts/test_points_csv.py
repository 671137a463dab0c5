"""I/O tables as CSV: the corpus of bad tables (exact errors, by line and column), the round trip
both ways, the bounds, and the spreadsheet dialects accepted (BOM, semicolons, CRLF, case)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.loader import decode_yaml, load_contract
from contracts.limits import MAX_POINTS
from contracts.points_cells import MAX_CELL_CHARS, REQUIRED
from contracts.points_csv import MAX_CSV_BYTES, PointsTableInvalid, read_points, write_points
from contracts.points_fragment import parse, point_issues, render
from contracts.schema import DataType, Direction, Order, Point, Table

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "contracts" / "examples").glob("*.yaml"))
CORPUS = Path(__file__).parent / "invalid_maps"
CASES = sorted(CORPUS.glob("*.csv"))
HEADER = ",".join(REQUIRED) + "\n"

MAP = """\
point_name,protocol,address,type,unit,scale,direction,owner,endpoint,unit_id,range,limits,stale_after_ms
level,modbus,30001,float32,m,1,read,,,,0..6,,2000
pump_speed,modbus,40021,uint16,rpm,0.1,write,tank-fill,,,,0..1500,
valve_open,modbus,00014,bool,,1,write,tank-fill,,,,,
drive_fault,modbus,10001,bool,,1,read,,rs485,2,,,500
"""


def _errors(data: bytes) -> list[str]:
    with pytest.raises(PointsTableInvalid) as info:
        read_points(data)
    return [str(i) for i in info.value.issues]


def test_corpus_has_a_pair_for_every_case() -> None:
    assert len(CASES) >= 30
    assert {p.stem for p in CORPUS.glob("*.expected")} == {p.stem for p in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_bad_table_reports_exactly_the_expected_errors(case: Path) -> None:
    assert _errors(case.read_bytes()) == case.with_suffix(".expected").read_text().splitlines()


def test_a_table_reads_into_points_with_modicon_addresses_converted() -> None:
    level, pump, valve, fault = read_points(MAP.encode())
    assert (level.table, level.address, level.range, level.stale_after_ms) == (
        Table.INPUT, 0, (0.0, 6.0), 2000)
    assert (pump.table, pump.address, pump.scale, pump.owner, pump.limits) == (
        Table.HOLDING, 20, 0.1, "tank-fill", (0.0, 1500.0))
    assert (valve.table, valve.address, valve.unit_id, valve.endpoint) == (Table.COIL, 13, 1, None)
    assert (fault.table, fault.address, fault.unit_id, fault.endpoint) == (
        Table.DISCRETE, 0, 2, "rs485")


def test_a_written_table_reads_back_byte_for_byte() -> None:
    assert write_points(read_points(MAP.encode())) == MAP


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_contract_round_trips_through_csv(example: Path) -> None:
    points = load_contract(example).points
    assert read_points(write_points(points).encode()) == points


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_contract_round_trips_through_the_points_document(example: Path) -> None:
    points = load_contract(example).points
    assert parse(decode_yaml(render(points), "points.yaml")) == points


def test_every_point_field_survives_the_round_trip() -> None:
    level = load_contract(EXAMPLES[-1]).points[0]
    odd = dataclasses.replace(level, endpoint="plc-1", unit_id=7, word_order=Order.LITTLE,
                              byte_order=Order.LITTLE, offset=-273.15, scale=1e-3, deadband=0.25,
                              frozen_after_ms=9000, max_rate_per_s=2.5, range=(-40.0, 1e6),
                              unit="°C, ambient")
    assert read_points(write_points([odd]).encode()) == (odd,)


def test_export_adds_only_the_optional_columns_some_point_uses() -> None:
    text = write_points(read_points((HEADER + "level,modbus,30001,float32,m,1,read,\n").encode()))
    assert text == HEADER + "level,modbus,30001,float32,m,1,read,\n"


def test_the_points_document_shows_each_address_in_modicon_notation() -> None:
    text = render(read_points(MAP.encode()))
    assert text.splitlines()[2] == ("  - {name: pump_speed, table: holding, address: 20, type: uint16,"
                                    " direction: write, unit: rpm, scale: 0.1, owner: tank-fill,"
                                    " limits: [0.0, 1500.0]}  # 40021")
    assert text.splitlines()[4].endswith("# 10001")


def test_an_empty_table_makes_an_empty_points_document() -> None:
    assert read_points(HEADER.encode()) == ()
    assert parse(decode_yaml(render(()), "points.yaml")) == ()


def test_spreadsheet_dialects_are_read_alike() -> None:
    points = read_points(MAP.encode())
    excel = "\ufeff" + MAP.replace(",", ";").replace("\n", "\r\n")
    shouty = MAP.replace("point_name,", " Point_Name ,").replace("read", "READ")
    assert read_points(excel.encode()) == points
    assert read_points(shouty.encode()) == points


def test_empty_rows_are_skipped_and_line_numbers_still_name_the_file_line() -> None:
    text = HEADER + ",,,,,,,\n\n" + "level,modbus,30001,float32,m,1,sideways,\n"
    assert _errors(text.encode()) == [
        "line 4, column 7 (direction): 'sideways' is not one of read, write"]


def test_a_table_over_the_byte_bound_is_refused_before_it_is_read() -> None:
    data = HEADER.encode() + b"x" * MAX_CSV_BYTES
    assert _errors(data) == [f"line 1: the table is larger than {MAX_CSV_BYTES} bytes"]


def test_a_table_over_the_row_bound_is_refused_naming_the_first_row_too_many() -> None:
    rows = "".join(f"p{i},modbus,4{i + 1:05d},uint16,,1,read,\n" for i in range(MAX_POINTS + 1))
    assert _errors((HEADER + rows).encode()) == [
        f"line {MAX_POINTS + 2}: more than {MAX_POINTS} rows; a contract has at most"
        f" {MAX_POINTS} points"]


def test_a_table_of_the_most_rows_allowed_is_read() -> None:
    rows = "".join(f"p{i},modbus,4{i + 1:05d},uint16,,1,read,\n" for i in range(MAX_POINTS))
    assert len(read_points((HEADER + rows).encode())) == MAX_POINTS


def test_an_over_long_cell_is_refused_without_quoting_it_whole() -> None:
    text = HEADER + f"level,modbus,30001,float32,{'m' * (MAX_CELL_CHARS + 1)},1,read,\n"
    assert _errors(text.encode()) == [
        f"line 2, column 5 (unit): has {MAX_CELL_CHARS + 1} characters; at most {MAX_CELL_CHARS}"]


def test_errors_past_the_issue_bound_are_counted_not_listed() -> None:
    rows = "".join(f"p{i},modbus,20001,uint16,,1,read,\n" for i in range(300))
    with pytest.raises(PointsTableInvalid) as info:
        read_points((HEADER + rows).encode())
    assert len(info.value.issues) == 200 and info.value.extra == 100
    assert str(info.value).endswith("; 100 more issues not listed")


_LOW = st.floats(allow_nan=False, allow_infinity=False, min_value=0.0, max_value=99.0)
"""Ranges within 0..100 fit every type at the scales drawn below."""


@st.composite
def _points(draw: st.DrawFn) -> tuple[Point, ...]:
    """Valid points on distinct registers: each takes the next free offsets of a random table."""
    out, next_free = [], dict.fromkeys(Table, 0)
    for i in range(draw(st.integers(0, 6))):
        table = draw(st.sampled_from(list(Table)))
        kind = DataType.BOOL if table.is_bit else draw(st.sampled_from(
            [t for t in DataType if t is not DataType.BOOL]))
        writes = table.writable and draw(st.booleans())
        low = draw(_LOW)
        point = Point(
            name=f"p{i}", table=table, address=next_free[table], type=kind,
            direction=Direction.WRITE if writes else Direction.READ,
            owner="tank-fill" if writes else None, unit_id=draw(st.integers(0, 247)),
            endpoint=draw(st.sampled_from([None, "plc", "rs485-1"])),
            unit=draw(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                              max_size=8)).strip(),
            range=None if kind is DataType.BOOL else draw(st.none() | st.just((low, low + 1.0))),
            stale_after_ms=draw(st.none() | st.integers(1, 86_400_000)))
        next_free[table] += point.registers + draw(st.integers(0, 3))
        out.append(point)
    return tuple(out)


@given(_points())
def test_any_valid_points_round_trip_through_csv(points: tuple[Point, ...]) -> None:
    assert point_issues(points) == []
    assert read_points(write_points(points).encode()) == points
