"""`fieldpact points import|export`, driven in-process through fieldpact.cli.main."""
from __future__ import annotations

from pathlib import Path

import pytest

from contracts.loader import load_contract, load_document
from contracts.points_csv import MAX_CSV_BYTES
from contracts.points_fragment import parse
from fieldpact.cli import main

ROOT = Path(__file__).resolve().parents[2]
TANK = ROOT / "contracts" / "examples" / "tank-fill.yaml"
MAP = """\
point_name,protocol,address,type,unit,scale,direction,owner
level,modbus,30001,float32,m,1,read,
pump_speed,modbus,40021,uint16,rpm,0.1,write,tank-fill
"""


def _csv(tmp_path: Path, text: str | bytes, name: str = "map.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def test_import_prints_the_points_document_with_modicon_comments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["points", "import", str(_csv(tmp_path, MAP))]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "points:",
        "  - {name: level, table: input, address: 0, type: float32, direction: read, unit: m}"
        "  # 30001",
        "  - {name: pump_speed, table: holding, address: 20, type: uint16, direction: write,"
        " unit: rpm, scale: 0.1, owner: tank-fill}  # 40021",
    ]


def test_import_names_every_bad_cell_by_file_line_and_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _csv(tmp_path, MAP.replace("30001", "20001").replace("0.1", "0,1").replace(
        ",0,1,", ',"0,1",'))
    assert main(["points", "import", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{path}:2:3: address: '20001' starts with 2, which names no table (a Modicon address is 5"
        " or 6 digits: 0xxxx coil, 1xxxx discrete input, 3xxxx input register, 4xxxx holding"
        " register, numbered from 1)",
        f"{path}:3:6: scale: must be a number, got '0,1' (write the decimal with a point)",
    ]


def test_import_writes_the_document_to_out_and_export_writes_the_table_back(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    points_yaml, table = tmp_path / "points.yaml", tmp_path / "again.csv"
    assert main(["points", "import", str(_csv(tmp_path, MAP)), "--out", str(points_yaml)]) == 0
    assert main(["points", "export", str(points_yaml), "--out", str(table)]) == 0
    assert capsys.readouterr().out == ""
    assert table.read_text(encoding="utf-8") == MAP


def test_export_of_a_contract_round_trips_its_points(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["points", "export", str(TANK)]) == 0
    table = _csv(tmp_path, capsys.readouterr().out)
    assert main(["points", "import", str(table)]) == 0
    pasted = _csv(tmp_path, capsys.readouterr().out, "points.yaml")
    assert parse(load_document(pasted)) == load_contract(TANK).points


def test_export_refuses_an_invalid_contract_naming_its_issues(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _csv(tmp_path, TANK.read_text().replace("table: coil, address: 13,",
                                                  'table: coil, address: "40014",'), "bad.yaml")
    assert main(["points", "export", str(bad)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{bad}: points[3].address: Modicon '40014' is holding 13 (40014), but the point's table"
        " is coil"]


def test_import_refuses_an_oversized_table_without_reading_it_all(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _csv(tmp_path, MAP.encode() + b"#" * (2 * MAX_CSV_BYTES))
    assert main(["points", "import", str(path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:1: the table is larger than {MAX_CSV_BYTES} bytes"]


def test_import_of_a_missing_file_says_so(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["points", "import", str(tmp_path / "nope.csv")]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path / 'nope.csv'}: cannot read: No such file or directory"]


def test_the_readme_example_table_imports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = readme.split("```csv\n", 1)[1].split("```", 1)[0]
    assert main(["points", "import", str(_csv(tmp_path, example))]) == 0
    assert "# 40021" in capsys.readouterr().out
