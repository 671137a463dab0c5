"""agent.toml endpoints: the three kinds with their own timeout and retry, the legacy [modbus]
table as the endpoint `modbus`, and errors that name the key and the bad value."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, from_mapping
from agent.endpoint_config import Endpoint, EndpointKind, parse_endpoints
from agent.endpoints import EndpointSet
from agent.link import MemoryLink
from contracts.errors import ContractRefused
from contracts.loader import check_mapping
from tests.agent.conftest import tank_document

BASE = {"device": "d1", "site": "s1", "journal": "j.db", "trusted_key": "hub.pub"}


def test_the_legacy_modbus_table_is_one_tcp_endpoint_named_modbus() -> None:
    cfg = from_mapping({**BASE, "modbus": {"host": "10.0.0.5", "port": 5020, "timeout_s": 0.25}},
                       Path("/etc/fp"), env={})
    assert cfg.all_endpoints() == (Endpoint(name="modbus", kind=EndpointKind.TCP, host="10.0.0.5",
                                            port=5020, timeout_s=0.25),)
    assert cfg.modbus is not None and (cfg.modbus.host, cfg.modbus.port) == ("10.0.0.5", 5020)


def test_named_endpoints_of_each_kind_with_their_own_timeout_and_retry() -> None:
    found = parse_endpoints({"endpoints": {
        "plc": {"kind": "modbus-tcp", "host": "192.0.2.10", "port": 502, "timeout_s": 0.3,
                "retry": {"initial_s": 0.1, "max_s": 2}},
        "line1": {"kind": "modbus-rtu", "device": "/dev/ttyUSB0", "baud": 9600, "parity": "n",
                  "stop_bits": 2, "byte_timeout_s": 0.005, "timeout_s": 1},
        "gw": {"kind": "modbus-rtu-over-tcp", "host": "192.0.2.20", "port": 4001}}})
    by = {e.name: e for e in found}
    assert (by["plc"].timeout_s, by["plc"].retry_initial_s, by["plc"].retry_max_s) == (0.3, 0.1, 2.0)
    assert (by["line1"].kind, by["line1"].baud, by["line1"].parity, by["line1"].stop_bits) == (
        EndpointKind.RTU, 9600, "N", 2)
    assert by["line1"].frame_gap_s == 0.005 and by["line1"].label == "rtu:/dev/ttyUSB0"
    assert by["gw"].kind.rtu_framing and by["gw"].label == "rtu+tcp://192.0.2.20:4001"
    assert by["gw"].frame_gap_s == 0.0  # the gateway keeps the line's timing, not us


def test_the_frame_gap_is_three_and_a_half_characters_and_fixed_above_19200_baud() -> None:
    slow = Endpoint(name="l", kind=EndpointKind.RTU, device="/dev/x", baud=9600)
    fast = Endpoint(name="l", kind=EndpointKind.RTU, device="/dev/x", baud=115200)
    assert slow.frame_gap_s == pytest.approx(3.5 * 11 / 9600)
    assert fast.frame_gap_s == 0.00175


@pytest.mark.parametrize(("tables", "message"), [
    ({"endpoints": {"p": {"kind": "modbus-udp", "host": "h", "port": 1}}},
     "endpoints.p.kind: expected one of modbus-tcp, modbus-rtu, modbus-rtu-over-tcp, got 'modbus-udp'"),
    ({"endpoints": {"p": {"kind": "modbus-tcp", "host": "h"}}}, "endpoints.p.port: is required"),
    ({"endpoints": {"p": {"kind": "modbus-tcp", "host": "h", "port": 70000}}},
     "endpoints.p.port: must be within 1..65535, got 70000"),
    ({"endpoints": {"l": {"kind": "modbus-rtu", "device": "/dev/x", "parity": "X"}}},
     "endpoints.l.parity: expected N, E or O, got 'X'"),
    ({"endpoints": {"l": {"kind": "modbus-rtu", "device": "/dev/x", "stop_bits": 3}}},
     "endpoints.l.stop_bits: expected 1 or 2, got 3"),
    ({"endpoints": {"l": {"kind": "modbus-rtu", "device": "/dev/x", "timeout_s": 0}}},
     "endpoints.l.timeout_s: must be > 0, got 0.0"),
    ({"endpoints": {"l": {"kind": "modbus-rtu", "device": "/dev/x", "retry": {"max_s": -1}}}},
     "endpoints.l.retry.max_s: must be > 0, got -1.0"),
    ({"endpoints": {"l": {"kind": "modbus-rtu", "device": "/dev/x", "speed": 9600}}},
     "endpoints.l.speed: unknown key"),
    ({"modbus": {"host": "h", "port": 1}, "endpoints": {"modbus": {"kind": "modbus-tcp", "host": "h",
                                                                   "port": 2}}},
     "modbus: the legacy table and endpoints.modbus name the same endpoint"),
    ({}, "endpoints: is required (or the legacy [modbus] table)"),
])
def test_a_bad_endpoint_is_refused_naming_the_key(tables: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_mapping({**BASE, **tables}, Path("/etc/fp"), env={})
    assert str(err.value).startswith(message)


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
