"""agent.toml endpoints: the three kinds with their own timeout and retry, the legacy [modbus]
table as the endpoint `modbus`, and errors that name the key and the bad value."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, load
from agent.endpoint_config import Endpoint, EndpointKind
from agent.endpoints import EndpointSet
from agent.link import MemoryLink
from contracts.errors import ContractRefused
from contracts.loader import check_mapping
from tests.agent.conftest import tank_document

BASE = 'device = "d1"\nsite = "s1"\njournal = "j.db"\ntrusted_key = "hub.pub"\n'
THREE = """
[endpoints.plc]
kind = "modbus-tcp"
host = "192.0.2.10"
port = 502
timeout_s = 0.3
retry = {initial_s = 0.1, max_s = 2}

[endpoints.line1]
kind = "modbus-rtu"
device = "/dev/ttyUSB0"
baud = 9600
parity = "n"
stop_bits = 2
byte_timeout_s = 0.005
timeout_s = 1

[endpoints.gw]
kind = "modbus-rtu-over-tcp"
host = "192.0.2.20"
port = 4001
"""


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Any:
    path = tmp_path / "agent.toml"
    path.write_text(BASE + text)
    return load(path, env or {})


def test_the_legacy_modbus_table_is_one_tcp_endpoint_named_modbus(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[modbus]\nhost = "10.0.0.5"\nport = 5020\ntimeout_s = 0.25\n')
    assert cfg.all_endpoints() == (Endpoint(name="modbus", kind=EndpointKind.TCP, host="10.0.0.5",
                                            port=5020, timeout_s=0.25),)


def test_named_endpoints_of_each_kind_with_their_own_timeout_and_retry(tmp_path: Path) -> None:
    by = {e.name: e for e in _load(tmp_path, THREE).all_endpoints()}
    assert (by["plc"].timeout_s, by["plc"].retry_initial_s, by["plc"].retry_max_s) == (0.3, 0.1, 2.0)
    assert (by["line1"].kind, by["line1"].baud, by["line1"].parity, by["line1"].stop_bits) == (
        EndpointKind.RTU, 9600, "N", 2)
    assert by["line1"].frame_gap_s == 0.005 and by["line1"].label == "rtu:/dev/ttyUSB0"
    assert by["gw"].kind.rtu_framing and by["gw"].label == "rtu+tcp://192.0.2.20:4001"
    assert by["gw"].frame_gap_s == 0.0  # the gateway keeps the line's timing, not us


def test_the_environment_sets_an_endpoint_key(tmp_path: Path) -> None:
    cfg = _load(tmp_path, THREE, {"FIELDPACT_AGENT_ENDPOINTS__PLC__PORT": "1502"})
    assert {e.name: e.port for e in cfg.all_endpoints()}["plc"] == 1502


def test_the_frame_gap_is_three_and_a_half_characters_and_fixed_above_19200_baud() -> None:
    slow = Endpoint(name="l", kind=EndpointKind.RTU, device="/dev/x", baud=9600)
    fast = Endpoint(name="l", kind=EndpointKind.RTU, device="/dev/x", baud=115200)
    assert slow.frame_gap_s == pytest.approx(3.5 * 11 / 9600)
    assert fast.frame_gap_s == 0.00175


RTU = '[endpoints.l]\nkind = "modbus-rtu"\ndevice = "/dev/x"\n'


@pytest.mark.parametrize(("text", "key", "reason"), [
    ('[endpoints.p]\nkind = "modbus-udp"\nhost = "h"\nport = 1\n', "endpoints.p.kind",
     "must be one of modbus-tcp, modbus-rtu, modbus-rtu-over-tcp"),
    ('[endpoints.p]\nkind = "modbus-tcp"\nhost = "h"\n', "endpoints.p.port", "required"),
    ('[endpoints.p]\nkind = "modbus-tcp"\nhost = "h"\nport = 70000\n', "endpoints.p.port", "65535"),
    ('[endpoints.p]\nkind = "modbus-tcp"\nhost = "h"\nport = 1\nbaud = 9600\n', "endpoints.p.baud",
     "unknown key"),
    (RTU + 'parity = "X"\n', "endpoints.l.parity", "must be N, E or O"),
    (RTU + "stop_bits = 3\n", "endpoints.l.stop_bits", "2"),
    (RTU + "timeout_s = 0\n", "endpoints.l.timeout_s", "0"),
    (RTU + "retry = {max_s = -1}\n", "endpoints.l.retry.max_s", "0"),
    (RTU + "speed = 9600\n", "endpoints.l.speed", "unknown key"),
    ('[modbus]\nhost = "h"\nport = 1\n[endpoints.modbus]\nkind = "modbus-tcp"\nhost = "h"\nport = 2\n',
     "endpoints", "names the endpoint the [modbus] table is"),
    ("", "modbus", "required"),
])
def test_a_bad_endpoint_is_refused_naming_the_key(tmp_path: Path, text: str, key: str,
                                                   reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert err.value.key == key and reason in str(err.value), str(err.value)


def _contract(**endpoint_of: str) -> Any:
    doc = tank_document()
    for p in doc["points"]:
        if p["name"] in endpoint_of:
            p["endpoint"] = endpoint_of[p["name"]]
    return check_mapping(doc)


def test_points_naming_no_endpoint_are_on_the_only_one_or_the_legacy_one() -> None:
    EndpointSet({"plc": MemoryLink()}).check_contract(_contract())
    EndpointSet({"modbus": MemoryLink(), "line": MemoryLink()}).check_contract(
        _contract(level="line"))
    with pytest.raises(ContractRefused) as err:
        EndpointSet({"plc": MemoryLink(), "line": MemoryLink()}).check_contract(_contract(level="line"))
    assert err.value.detail == ("points.high_level.endpoint: required, this agent has several "
                                "endpoints (line, plc)")


def test_the_contracts_list_is_read_with_relative_paths_beside_the_file(tmp_path: Path) -> None:
    """(Converted with the endpoints to the one settings reader: agent/config.py `_paths`.)"""
    cfg = _load(tmp_path, 'contracts = ["a.cose", "/etc/fp/b.cose"]\n' + THREE)
    assert cfg.contracts == (tmp_path / "a.cose", Path("/etc/fp/b.cose"))
