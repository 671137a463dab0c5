"""Designs, bindings, the per-device compiler and snapshots (contracts/fleet_*.py): pure, plain
asserts."""
from __future__ import annotations

import pytest

from contracts.errors import FleetInvalid
from contracts.fleet_binding import Selector, Target, parse_binding, resolve
from contracts.fleet_compile import comparable, compile_contract, config_digest, field_diff
from contracts.fleet_design import parse_design
from contracts.fleet_snapshot import (assignments, build_snapshot, decode_snapshot,
                                      encode_snapshot, snapshot_id)
from contracts.loader import check_mapping
from contracts.schema import Table
from contracts.schema_serialize import to_mapping
from tests.contracts.fleet_docs import tank_binding, tank_design

T0 = 1_795_500_000_000
DEVICES = (Target(id="pump-7", site="north", labels={"kind": "tank"}),
           Target(id="skid-2", site="north", labels={"kind": "tank"}),
           Target(id="tank-9", site="south", labels={"kind": "tank"}))


def _compile(binding: dict[str, object], t: Target, design: dict[str, object] | None = None):
    return compile_contract(parse_design(design or tank_design()), parse_binding(binding), t,
                            version=1, valid_from_ms=T0)


def _issues(exc: pytest.ExceptionInfo[FleetInvalid]) -> list[tuple[str | None, str | None, str]]:
    return [(i.origin, i.binding, i.field) for i in exc.value.issues]


def test_one_design_bound_to_three_devices_at_different_addresses_gives_three_valid_contracts() -> None:
    pumps = {"pump-7": 20, "skid-2": 100, "tank-9": 7}
    contracts = [_compile(tank_binding(f"b-{t.id}", {"device": t.id}, pumps[t.id]), t)
                 for t in DEVICES]
    for c, t in zip(contracts, DEVICES):
        assert (c.contract, c.device, c.site) == (f"tank-fill.{t.id}", t.id, t.site)
        assert c.point("pump_speed").address == pumps[t.id]
        assert c.point("pump_speed").owner == c.contract  # single writer: the compiled id
        assert c.point("pump_speed").limits == (0.0, 1200.0)  # "$max_rpm"
        assert c.steps[0].until == "level >= 4.0"  # default fill_level, as a literal
        assert check_mapping(to_mapping(c)) == c  # valid by the contract language's own rules
    assert len({config_digest(c) for c in contracts}) == 3


def test_a_bad_address_is_named_as_the_bindings_field() -> None:
    with pytest.raises(FleetInvalid) as bad:
        _compile(tank_binding("b-pump", {"device": "pump-7"}, 70000), DEVICES[0])
    issue = bad.value.issues[0]
    assert (issue.design, issue.binding, issue.device) == ("tank-fill@3", "b-pump", "pump-7")
    assert (issue.origin, issue.field) == ("binding", "points.pump_speed.address")
    assert "65535" in issue.reason and "binding field points.pump_speed.address" in str(issue)


def test_parameters_are_checked_against_the_design() -> None:
    binding = tank_binding("b", {"device": "pump-7"}, max_rpm=2000,
                           parameters={"max_rpm": 2000, "speed": 3})
    with pytest.raises(FleetInvalid) as bad:
        _compile(binding, DEVICES[0])
    assert _issues(bad) == [("binding", "b", "parameters.speed"), ("binding", "b", "parameters.max_rpm")]
    assert "1500" in bad.value.issues[1].reason


def test_a_point_the_binding_does_not_place_and_an_overlap_are_both_named() -> None:
    missing = tank_binding("b", {"device": "pump-7"})
    del missing["points"]["valve_open"]  # type: ignore[attr-defined]
    with pytest.raises(FleetInvalid) as bad:
        _compile(missing, DEVICES[0])
    assert _issues(bad) == [("binding", "b", "points.valve_open.address")]
    overlap = tank_binding("b", {"device": "pump-7"}, unit_id=1)
    overlap["points"]["valve_open"] = {"address": 0}  # type: ignore[index]
    overlap["points"]["level"] = {"address": 0, "unit_id": 1}  # type: ignore[index]
    compiled = _compile(overlap, DEVICES[0])  # coil 0 and input 0: different tables, no overlap
    assert compiled.point("valve_open").table is Table.COIL


def test_a_design_expression_error_is_named_as_the_designs_field() -> None:
    design = tank_design(steps=[{"name": "fill", "do": {"pump_speed": "$max_rpm"},
                                 "until": "levle >= $fill_level"}])
    with pytest.raises(FleetInvalid) as bad:
        _compile(tank_binding("b", {"device": "pump-7"}), DEVICES[0], design)
    assert ("design", "b", "steps[0].until") in _issues(bad)


def test_a_design_refuses_addresses_owners_and_undeclared_parameters() -> None:
    design = tank_design()
    design["points"][0]["address"] = 3  # type: ignore[index]
    design["points"][1]["owner"] = "me"  # type: ignore[index]
    design["steps"][0]["until"] = "level >= $nope"  # type: ignore[index]
    with pytest.raises(FleetInvalid) as bad:
        parse_design(design)
    assert [i.field for i in bad.value.issues] == ["points.level.address", "points.pump_speed.owner",
                                                   "steps[0].until"]


def test_config_digest_ignores_version_and_validity_and_nothing_else() -> None:
    binding = tank_binding("b", {"device": "pump-7"})
    a = _compile(binding, DEVICES[0])
    b = compile_contract(parse_design(tank_design(version=4)), parse_binding(binding), DEVICES[0],
                         version=9, valid_from_ms=T0 + 5000)
    c = _compile(tank_binding("b", {"device": "pump-7"}, 21), DEVICES[0])
    assert config_digest(a) == config_digest(b) != config_digest(c)
    assert field_diff(comparable(a), comparable(c)) == [
        {"field": "points.pump_speed.address", "from": 20, "to": 21}]


def test_a_device_binding_wins_and_two_label_bindings_are_ambiguous() -> None:
    by_label = parse_binding(tank_binding("north", {"site": "north", "labels": {"kind": "tank"}}))
    by_id = parse_binding(tank_binding("pump", {"device": "pump-7"}))
    assert resolve([by_label, by_id], "tank-fill", DEVICES[0]) is by_id
    assert resolve([by_label, by_id], "tank-fill", DEVICES[1]) is by_label
    assert resolve([by_label, by_id], "tank-fill", DEVICES[2]) is None  # another site
    twin = parse_binding(tank_binding("north-2", {"site": "north"}))
    with pytest.raises(FleetInvalid) as bad:
        resolve([by_label, twin], "tank-fill", DEVICES[1])
    assert bad.value.issues[0].binding == "north, north-2"


def test_snapshots_are_byte_identical_for_the_same_inputs_in_any_order() -> None:
    design = parse_design(tank_design())
    bindings = [parse_binding(tank_binding(f"b{i}", {"device": t.id}, 20 + i))
                for i, t in enumerate(DEVICES)]
    one = encode_snapshot(build_snapshot([design], bindings, Selector(sites=("north", "south"))))
    two = encode_snapshot(build_snapshot([parse_design(tank_design())], reversed(bindings),
                                         Selector(sites=("south", "north"))))
    assert one == two and snapshot_id(one) == snapshot_id(two)
    back = decode_snapshot(one)
    assert encode_snapshot(back) == one
    assert list(back.designs[0].document["steps"][0]["do"]) == ["valve_open", "pump_speed"]
    changed = encode_snapshot(build_snapshot([design], bindings[:2], Selector()))
    assert snapshot_id(changed) != snapshot_id(one)


def test_a_targeted_device_without_a_binding_is_binding_missing() -> None:
    snap = build_snapshot([parse_design(tank_design())],
                          [parse_binding(tank_binding("b", {"device": "pump-7"}))], Selector())
    assert assignments(snap, DEVICES[0])[0].binding is not None
    missing = assignments(snap, DEVICES[1])
    assert missing[0].binding is None and missing[0].problem is not None
    assert assignments(build_snapshot(snap.designs, snap.bindings, Selector(sites=("x",))),
                       DEVICES[0]) == []


def test_a_snapshot_refuses_a_binding_without_its_design() -> None:
    with pytest.raises(FleetInvalid) as bad:
        build_snapshot([], [parse_binding(tank_binding("b", {"device": "pump-7"}))], Selector())
    assert (bad.value.issues[0].binding, bad.value.issues[0].field) == ("b", "design")


def test_the_same_design_runs_at_modicon_40021_on_a_pump_station_and_40101_on_a_skid() -> None:
    station = _compile(tank_binding("station", {"device": "pump-7"}, "40021",
                                    endpoint="plc"), DEVICES[0])
    skid = _compile(tank_binding("skid", {"device": "skid-2"}, "40101"), DEVICES[1])
    assert (station.point("pump_speed").table, station.point("pump_speed").address) == (Table.HOLDING, 20)
    assert station.point("pump_speed").endpoint == "plc"  # the binding's default endpoint
    assert skid.point("pump_speed").address == 100 and skid.point("pump_speed").endpoint is None
    with pytest.raises(FleetInvalid) as bad:
        _compile(tank_binding("skid", {"device": "skid-2"}, "30101"), DEVICES[1])
    assert _issues(bad) == [("binding", "skid", "points.pump_speed.address")]
    assert "input" in bad.value.issues[0].reason and "holding" in bad.value.issues[0].reason


def test_a_label_bindings_contract_renamed_for_another_device_is_that_devices_compilation() -> None:
    from contracts.fleet_compile import renamed
    design = parse_design(tank_design())
    north = parse_binding(tank_binding("north", {"site": "north", "labels": {"kind": "tank"}}))
    first = compile_contract(design, north, DEVICES[0], version=1, valid_from_ms=T0)
    assert renamed(first, "tank-fill", DEVICES[1]) == compile_contract(
        design, north, DEVICES[1], version=1, valid_from_ms=T0)
    assert renamed(first, "tank-fill", DEVICES[2]) is None  # another site: compile it in full
