"""A second Modbus master (a real pymodbus client) moves the pump mid-ramp on a real simulator:
the agent journals `second_writer`, and its ramp goes on from what the device showed, not from its
own last command."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from agent.config import AgentConfig, ModbusConfig
from contracts.journal_replay import contracts_in, replay_entries
from contracts.chain import EntryKind
from contracts.loader import check_mapping
from contracts.schema import Contract
from simulators.server import SimDevice
from tests.agent.conftest import tank_document
from tests.agent.helpers import events, journal_entries, next_scans, running_agent
from tests.waiting import eventually

pytestmark = pytest.mark.slow

RATE = 100.0  # rpm/s: a 12 s ramp to 1200 rpm
PERIOD_MS = 50
FOREIGN_RPM = 100.0


async def test_the_ramp_continues_from_the_read_back_after_another_master_moved_the_pump(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    doc = tank_document(scan_period_ms=PERIOD_MS)
    for p in doc["points"]:
        if p["name"] == "pump_speed":
            p["max_rate_per_s"] = RATE
    path = tmp_path / "contract.cose"
    path.write_bytes(signer(check_mapping(doc)))
    async with SimDevice("tank", tick_ms=20, initial={"level": 1.0}) as sim:
        cfg = AgentConfig(device="d1", site="s1", journal=tmp_path / "j.db", trusted_key=keys[1],
                          modbus=ModbusConfig(host="127.0.0.1", port=sim.port, timeout_s=0.3),
                          contract=path)
        async with running_agent(cfg) as agent:
            await eventually(lambda: sim.values()["pump_speed"] >= 300, 15, "the ramp past 300 rpm")
            hmi = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=1, retries=0)
            await hmi.connect()

            async def foreign_write_seen() -> bool:
                # A write that lands between the agent's read and its write is overwritten
                # unseen; write again, after the scans that follow it, until the agent saw one.
                if events(cfg.journal, "second_writer"):
                    return True
                await hmi.write_register(20, int(FOREIGN_RPM * 10), device_id=1)
                await next_scans(agent, 3)
                return False
            try:
                await eventually(foreign_write_seen, 15, "the agent seeing the second writer",
                                 every_s=0)
            finally:
                hmi.close()
    seen = events(cfg.journal, "second_writer")[0]
    assert seen.body["actual"] == FOREIGN_RPM and seen.body["expected"] >= 300
    outputs = [e for e in journal_entries(cfg.journal, {EntryKind.OUTPUT}) if e.ts_ms == seen.ts_ms]
    step = RATE * PERIOD_MS / 1000
    assert outputs and outputs[0].body["writes"]["pump_speed"] == pytest.approx(FOREIGN_RPM + step)
    entries = journal_entries(cfg.journal)
    assert replay_entries(entries, contracts_in(entries).get).ok
