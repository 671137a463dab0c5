"""Adapter faults in words as well as codes: what the link says, and what the journal keeps."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import AgentConfig, ModbusConfig
from agent.link import exception_reason, is_exception
from contracts.chain import EntryKind
from contracts.loader import check_mapping
from contracts.schema import Contract, Table
from simulators.server import SimDevice
from tests.agent.conftest import tank_document
from tests.agent.helpers import journal_entries, running_agent
from tests.waiting import eventually


@pytest.mark.parametrize(("args", "words"), [
    ((2, Table.HOLDING, 63), "exception 2 (illegal data address) at holding 63"),
    ((1, Table.COIL, 13), "exception 1 (illegal function) at coil 13"),
    ((3, Table.INPUT, 0, 2), "exception 3 (illegal data value) at input 0..1"),
    ((4, Table.HOLDING, 20, 1, 7), "exception 4 (server device failure) at unit 7 holding 20"),
    ((6, Table.DISCRETE, 5), "exception 6 (server device busy) at discrete 5"),
    ((11, Table.HOLDING, 0), "exception 11 (gateway target device failed to respond) at holding 0"),
    ((99, Table.HOLDING, 0), "exception 99 (unknown exception code) at holding 0"),
])
def test_an_exception_is_named_in_words_with_its_code_and_address(
        args: tuple[int, ...], words: str) -> None:
    code, table, start, *rest = args
    assert exception_reason(code, table, start, *rest) == words  # type: ignore[arg-type]
    assert is_exception(words)


def test_other_reasons_are_not_exceptions() -> None:
    assert not any(is_exception(r) for r in ("timeout", "disconnected", "decode", None, ""))


async def test_the_journal_names_an_illegal_address_in_words(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    doc = tank_document()
    for p in doc["points"]:
        if p["name"] == "level":
            p["address"] = 100  # the simulator answers 0..63; the rest is exception 2
    path = tmp_path / "contract.cose"
    path.write_bytes(signer(check_mapping(doc)))
    async with SimDevice("tank", port=0, tick_ms=20) as sim:
        cfg = AgentConfig(device="d1", site="s1", journal=tmp_path / "journal.db",
                          trusted_key=keys[1], contract=path,
                          modbus=ModbusConfig(host="127.0.0.1", port=sim.port, timeout_s=0.3))
        async with running_agent(cfg) as agent:
            faults = await eventually(
                lambda: journal_entries(cfg.journal, {EntryKind.ADAPTER_FAULT}), 5, "a read fault")
            trips = await eventually(
                lambda: journal_entries(cfg.journal, {EntryKind.TRIP}), 5, "a guard trip")
            seg = agent.scan.segment
            telemetry_trip = seg.trip_cause if seg is not None else None  # what telemetry sends
    words = "exception 2 (illegal data address) at input 100..101"
    assert faults[0].body["reason"] == words and faults[0].body["point"] == "level"
    assert trips[0].body["detail"] == words
    assert telemetry_trip == f"bad_quality:level ({words})"

