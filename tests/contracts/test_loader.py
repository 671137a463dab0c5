"""The loader: YAML and JSON files in, checked contracts out; errors name file and line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from contracts.errors import ContractError, ContractInvalid, DocumentError
from contracts.loader import MAX_DOCUMENT_BYTES, check_mapping, load_contract, load_document
from contracts.schema_parse import parse_contract
from contracts.schema_serialize import to_mapping

ROOT = Path(__file__).resolve().parents[2]
TANK = ROOT / "contracts" / "examples" / "tank-fill.yaml"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_and_json_forms_of_a_contract_load_to_the_same_contract(tmp_path: Path) -> None:
    from_yaml = load_contract(TANK)
    as_json = _write(tmp_path, "tank.json", json.dumps(to_mapping(from_yaml)))
    assert load_contract(as_json) == from_yaml
    assert load_contract(_write(tmp_path, "tank.yml", TANK.read_text())) == from_yaml


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.yaml", "contract: x\npoints: [1,\n  2\nsteps: 3\n")
    with pytest.raises(DocumentError) as info:
        load_document(path)
    assert str(info.value).startswith(f"{path}:4:")


def test_json_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.json", '{"contract": "x",\n  "version": }')
    with pytest.raises(DocumentError, match=r"bad\.json:2:14: Expecting value"):
        load_document(path)


def test_duplicate_yaml_key_is_an_error_not_last_one_wins(tmp_path: Path) -> None:
    path = _write(tmp_path, "dup.yaml", "safe_state:\n  pump_speed: 0\n  pump_speed: 900\n")
    with pytest.raises(DocumentError, match=r"dup\.yaml:3:3: duplicate key 'pump_speed'"):
        load_document(path)


def test_duplicate_key_inside_a_flow_mapping_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "dup.yaml", "safe_state: {a: 0, b: 1, a: 2}\n")
    with pytest.raises(DocumentError, match="duplicate key 'a'"):
        load_document(path)


def test_duplicate_json_key_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "dup.json", '{"a": 1, "a": 2}')
    with pytest.raises(DocumentError, match="duplicate key 'a'"):
        load_document(path)


def test_yaml_1_1_words_stay_strings_so_points_may_be_called_on_or_no(tmp_path: Path) -> None:
    path = _write(tmp_path, "words.yaml", "on: yes\nno: off\nflag: true\nother: False\n")
    assert load_document(path) == {"on": "yes", "no": "off", "flag": True, "other": False}
    assert yaml.safe_load("on: 1") == {True: 1}  # the stock loader is left untouched


def test_unsupported_suffix_missing_file_and_oversize_file_are_document_errors(
        tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="unsupported file type '.toml'"):
        load_document(_write(tmp_path, "c.toml", "a = 1"))
    with pytest.raises(DocumentError, match="cannot read"):
        load_document(tmp_path / "absent.yaml")
    with pytest.raises(DocumentError, match="larger than"):
        load_document(_write(tmp_path, "big.yaml", "#" * (MAX_DOCUMENT_BYTES + 1)))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(DocumentError, match="not UTF-8"):
        load_document(latin1)


def test_document_errors_are_contract_errors() -> None:
    assert issubclass(DocumentError, ContractError)


def test_check_mapping_reports_structural_and_semantic_issues_together() -> None:
    m = yaml.safe_load(TANK.read_text())
    m["version"] = 0
    m["valid_until"] = m["valid_from"]  # semantic: no longer hidden by the structural issue
    with pytest.raises(ContractInvalid) as info:
        check_mapping(m)
    assert [str(i) for i in info.value.issues] == [
        "version: must be within 1..2147483647, got 0",
        "valid_until: must be after valid_from (2026-11-24T06:00:00Z)"]


def test_check_mapping_reports_every_semantic_issue_at_once() -> None:
    m = yaml.safe_load(TANK.read_text())
    m["valid_until"] = m["valid_from"]
    m["safe_state"] = {"pump_speed": 0}
    with pytest.raises(ContractInvalid) as info:
        check_mapping(m)
    assert [i.path for i in info.value.issues] == ["valid_until", "safe_state.valve_open"]


def test_check_mapping_returns_the_parsed_contract_when_valid() -> None:
    m = yaml.safe_load(TANK.read_text())
    assert check_mapping(m) == parse_contract(m)


def test_load_contract_notes_the_file_on_invalid_contracts(tmp_path: Path) -> None:
    text = TANK.read_text().replace("timeout_s: 1800", "timeout_s: 1800, x: 1")
    path = _write(tmp_path, "c.yaml", text)
    with pytest.raises(ContractInvalid) as info:
        load_contract(path)
    assert info.value.__notes__ == [f"in {path}"]
    assert [i.path for i in info.value.issues] == ["steps[0].x"]
