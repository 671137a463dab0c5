"""The agent end to end, in-process: real tank simulator, real pymodbus, real SQLite journal.

No broker: the agent runs standalone (a hub is not needed to run). The uplink has its own tests.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.config import AgentConfig, ModbusConfig
from agent.errors import JournalFull
from contracts.journal_replay import contracts_in, replay_entries
from contracts.chain import EntryKind, verify_chain, GENESIS
from contracts.inputs import Command, CommandKind
from contracts.loader import check_mapping
from contracts.schema import Contract
from simulators.faults import Fault
from simulators.server import SimDevice
from tests.agent.conftest import now_ms, tank_document
from tests.agent.helpers import events, journal_entries, running_agent
from tests.waiting import eventually


def agent_config(tmp_path: Path, keys: tuple[Path, Path], port: int, contract: Path) -> AgentConfig:
    return AgentConfig(device="d1", site="s1", journal=tmp_path / "journal.db",
                       trusted_key=keys[1], modbus=ModbusConfig(host="127.0.0.1", port=port,
                                                                timeout_s=0.3),
                       contract=contract)


@pytest.fixture
async def tank() -> AsyncIterator[SimDevice]:
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
        yield sim


def _write_signed(tmp_path: Path, signer: Callable[[Contract], bytes], **overrides: object) -> Path:
    path = tmp_path / "contract.cose"
    path.write_bytes(signer(check_mapping(tank_document(**overrides))))
    return path


async def test_fill_step_actuates_and_level_reaching_target_moves_to_hold(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes],
        tank: SimDevice) -> None:
    cfg = agent_config(tmp_path, keys, tank.port, _write_signed(tmp_path, signer))
    async with running_agent(cfg):
        await eventually(lambda: tank.values()["valve_open"] and tank.values()["pump_speed"] > 0,
                         5, "valve open and pump running in step fill")
        tank.set("level", 4.2)  # the step input: the tank is full
        await eventually(lambda: not tank.values()["valve_open"] and tank.values()["pump_speed"] == 0,
                         5, "valve closed and pump stopped in step hold")
    steps = [e.body.get("step") for e in events(cfg.journal, "step_entered")]
    assert steps == ["fill", "hold"]


async def test_frozen_level_trips_to_safe_state_in_the_same_cycle(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes],
        tank: SimDevice) -> None:
    cfg = agent_config(tmp_path, keys, tank.port, _write_signed(tmp_path, signer))
    async with running_agent(cfg):
        await eventually(lambda: tank.values()["pump_speed"] > 0, 5, "pump running")
        tank.faults.enable(Fault.FROZEN)
        trip = await eventually(lambda: events(cfg.journal, "guard_trip"), 5, "a guard trip")
        await eventually(lambda: tank.values()["pump_speed"] == 0 and not tank.values()["valve_open"],
                         2, "safe state on the device")
    assert "frozen" in str(trip[0].body)
    safe_writes = [e for e in journal_entries(cfg.journal, {EntryKind.OUTPUT})
                   if e.ts_ms == trip[0].ts_ms]
    assert safe_writes and safe_writes[0].body["writes"] == {"pump_speed": 0, "valve_open": False}


async def test_hub_write_command_to_a_point_not_owned_is_refused_and_journaled(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes],
        tank: SimDevice) -> None:
    doc = tank_document()
    doc["points"].append({"name": "mixer", "unit_id": 1, "table": "coil", "address": 14,
                          "type": "bool", "direction": "write", "owner": "tank-mixing"})
    path = tmp_path / "contract.cose"
    path.write_bytes(signer(check_mapping(doc)))
    cfg = agent_config(tmp_path, keys, tank.port, path)
    async with running_agent(cfg) as agent:
        await eventually(lambda: agent.scan.segment is not None, 5, "contract running")
        agent.scan.commands.append(Command(kind=CommandKind.WRITE, id="op-1", point="mixer", value=True))
        refused = await eventually(lambda: events(cfg.journal, "write_refused"), 5, "write refusal")
    assert refused[0].kind is EntryKind.REFUSAL
    assert refused[0].body.get("reason") == "not_owner"
    assert not any(w.address == 14 for w in tank.write_log if w.table.value == "coil")


async def test_journal_chain_is_intact_and_replay_reproduces_every_output(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes],
        tank: SimDevice) -> None:
    cfg = agent_config(tmp_path, keys, tank.port, _write_signed(tmp_path, signer))
    async with running_agent(cfg):
        await eventually(lambda: tank.values()["pump_speed"] >= 1200, 5, "ramp finished")
        tank.set("level", 4.5)
        await eventually(lambda: events(cfg.journal, "step_done"), 5, "fill done")
    entries = journal_entries(cfg.journal)
    assert verify_chain(entries, GENESIS, 0) is None
    report = replay_entries(entries, contracts_in(entries).get)
    assert report.segments == 1 and report.writes_checked > 5
    assert report.ok, report.mismatches[:3]


async def test_replay_stays_exact_across_a_contract_switch_mid_ramp(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes],
        tank: SimDevice) -> None:
    cfg = agent_config(tmp_path, keys, tank.port, _write_signed(tmp_path, signer))
    async with running_agent(cfg) as agent:
        await eventually(lambda: 0 < tank.values()["pump_speed"] < 1200, 5, "mid-ramp")
        assert agent.store is not None
        newer = await agent.store.receive(signer(check_mapping(tank_document(version=4))),
                                          now_ms())
        agent.scan.offer(newer)
        await eventually(lambda: len([e for e in journal_entries(cfg.journal)
                                      if e.kind is EntryKind.BOOT]) == 2, 5, "second segment")
        await eventually(lambda: len(events(cfg.journal, "step_entered")) == 2, 5, "v4 running")
    entries = journal_entries(cfg.journal)
    report = replay_entries(entries, contracts_in(entries).get)
    assert report.segments == 2
    assert report.ok, report.mismatches[:3]


async def test_disk_full_forces_safe_state_then_recovers_with_a_consistent_journal(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes],
        tank: SimDevice) -> None:
    cfg = agent_config(tmp_path, keys, tank.port, _write_signed(tmp_path, signer))
    async with running_agent(cfg) as agent:
        await eventually(lambda: tank.values()["pump_speed"] >= 1200, 5, "pump running")
        journal = agent.journal
        pages = await journal._call(lambda: journal.sync.db.execute("PRAGMA page_count").fetchone()[0])
        # A real SQLITE_FULL: the journal file may not grow past its current pages, and padding
        # entries use up the room left in them, so the agent's next commit finds the disk full.
        await journal._call(lambda: journal.sync.db.execute(f"PRAGMA max_page_count = {pages}"))
        for size in (2000, 200, 20):  # fill to the last byte: even a small entry cannot commit
            for i in range(500):
                try:
                    await journal.append(EntryKind.EVENT, {"event": "padding", "pad": "x" * size}, i)
                except JournalFull:
                    break
        await eventually(lambda: tank.values()["pump_speed"] == 0 and not tank.values()["valve_open"],
                         10, "safe state forced while the journal cannot commit")
        assert agent.scan.segment is not None and agent.scan.segment.forced_safe is not None
        assert not events(cfg.journal, "journal_recovered")  # still down: nothing commits
        await journal._call(lambda: journal.sync.db.execute(f"PRAGMA max_page_count = {pages * 1000}"))
        recovered = await eventually(lambda: events(cfg.journal, "journal_recovered"), 5, "recovery")
        await eventually(lambda: tank.values()["valve_open"], 5, "outputs re-asserted after recovery")
    assert recovered[0].body["writes"] == {"pump_speed": 0, "valve_open": False}
    entries = journal_entries(cfg.journal)
    assert verify_chain(entries, GENESIS, 0) is None
    assert [e.body.get("resumed") for e in entries if e.kind is EntryKind.BOOT] == [False, True]
    report = replay_entries(entries, contracts_in(entries).get)
    assert report.segments == 2 and report.ok, report.mismatches[:3]
