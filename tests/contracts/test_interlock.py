"""`interlock:` in the schema and the INTERLOCK command in the engine — pure."""
from __future__ import annotations

from typing import Any

import pytest

from contracts.codec import content_hash
from contracts.engine import EventKind, Mode
from contracts.errors import ContractInvalid, EncodingError
from contracts.guards import TripReason
from contracts.inputs import Command, CommandKind
from contracts.schema_parse import MAX_INTERLOCK, parse_contract
from contracts.schema_serialize import to_mapping
from contracts.wire import CommandMessage
from tests.contracts.test_engine import Run, tank, tank_doc


def _issues(**top: Any) -> list[tuple[str, str]]:
    doc = tank_doc()
    doc.update(top)
    with pytest.raises(ContractInvalid) as info:
        parse_contract(doc)
    return [(i.path, i.reason) for i in info.value.issues]


def test_interlock_names_other_contracts_and_round_trips() -> None:
    c = tank(interlock=["tank-drain", "mixer-2"])
    assert c.interlock == ("tank-drain", "mixer-2")
    assert parse_contract(to_mapping(c)) == c


def test_a_contract_without_interlock_keeps_its_document_and_hash() -> None:
    c = tank()
    assert "interlock" not in to_mapping(c)
    assert content_hash(c) == content_hash(tank(interlock=[]))


@pytest.mark.parametrize(("value", "expected"), [
    ("tank-drain", [("interlock", "must be a list of contract ids")]),
    (["tank-fill"], [("interlock[0]", "'tank-fill' is this contract itself")]),
    (["a", "b", "a"], [("interlock[2]", "'a' is named twice")]),
    (["Bad Id"], [("interlock[0]", "'Bad Id' must be lowercase letters, digits, '.', '_' or '-'"
                                   " (max 64)")]),
    ([f"c{i}" for i in range(MAX_INTERLOCK + 1)],
     [("interlock", f"has {MAX_INTERLOCK + 1} entries; at most {MAX_INTERLOCK} are allowed")]),
])
def test_a_bad_interlock_is_refused_naming_the_entry(value: Any,
                                                     expected: list[tuple[str, str]]) -> None:
    assert _issues(interlock=value) == expected


def _interlock(k: int) -> Command:
    return Command(kind=CommandKind.INTERLOCK, id=f"interlock:tank-drain:{k}", point="tank-drain")


def test_an_interlock_command_trips_a_running_contract_to_its_safe_state() -> None:
    run = Run(tank())
    run.upto(0, 3)
    assert run.state.mode is Mode.RUNNING and run.state.outputs != run.engine.initial_state().outputs
    r = run.at(3, cmds=(_interlock(3),))
    assert r.state.mode is Mode.SAFE and r.state.trip is TripReason.INTERLOCK
    trip = next(e for e in r.events if e.kind is EventKind.GUARD_TRIP)
    assert (trip.get("reason"), trip.get("point")) == ("interlock", "tank-drain")
    assert dict(r.state.outputs) == {"pump_speed": 0, "valve_open": False}


def test_an_interlock_on_a_tripped_contract_changes_nothing_and_resume_clears_it() -> None:
    run = Run(tank())
    run.upto(0, 3)
    run.at(3, cmds=(_interlock(3),))
    again = run.at(4, cmds=(_interlock(4),))
    assert again.events == () and again.state.mode is Mode.SAFE
    resumed = run.at(5, cmds=(Command(kind=CommandKind.RESUME, id="operator-1"),))
    assert resumed.state.mode is Mode.RUNNING and resumed.state.trip is None


def test_a_hub_may_not_send_an_interlock_and_commands_name_their_contract() -> None:
    with pytest.raises(EncodingError, match="is the agent's own"):
        CommandMessage.from_bytes(CommandMessage(command=_interlock(1)).to_bytes())
    hold = Command(kind=CommandKind.HOLD, id="op-1")
    msg = CommandMessage.from_bytes(CommandMessage(command=hold, contract="tank-fill").to_bytes())
    assert (msg.command, msg.contract) == (hold, "tank-fill")
    assert CommandMessage.from_bytes(CommandMessage(command=hold).to_bytes()).contract is None
