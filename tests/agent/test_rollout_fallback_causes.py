"""Causes and limits of the rollout fallback on a real agent and tank simulator:
- a cause that is no trip at all: a second Modbus master (a real pymodbus client) moves the pump
  while the contract runs. The engine never left RUNNING; the agent still falls back to the
  known-good contract, latched, and names the cause;
- a known-good hash this device never accepted: `rollout_fallback_failed` is journaled with the
  reason, and the tripped contract holds its own safe state."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from agent.config import AgentConfig, ModbusConfig
from contracts.chain import EntryKind
from contracts.loader import check_mapping
from contracts.schema import Contract
from simulators.server import SimDevice
from tests.agent.helpers import events, journal_entries, next_scans, running_agent
from tests.agent.test_rollout_fallback_e2e import KNOWN_GOOD_PUMP, known_good_doc, new_version_doc
from tests.agent.test_rollout_fallback_restart import _config, _running_version_3
from tests.waiting import eventually

pytestmark = pytest.mark.slow


async def test_a_second_writer_within_the_window_falls_back(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
        cfg, good_hash, new_hash = _config(tmp_path, keys, sim.port, signer)
        async with running_agent(cfg) as agent:
            await _running_version_3(agent)
            await eventually(lambda: sim.values()["pump_speed"] >= 300, 15, "the ramp past 300")
            hmi = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=1, retries=0)
            await hmi.connect()

            async def fell_back() -> bool:
                if events(cfg.journal, "rollout_fallback"):
                    return True
                await hmi.write_register(20, 1000, device_id=1)  # 100 rpm, not the agent's
                await next_scans(agent, 3)
                return False
            try:
                await eventually(fell_back, 15, "the fallback on a second writer", every_s=0)
            finally:
                hmi.close()
            await eventually(lambda: agent.scan.segments["tank-fill"].active.hash == good_hash
                             and agent.scan.segments["tank-fill"].actuator.safe_view() is not None
                             and not agent.scan.segments["tank-fill"].actuator.safe_view()
                             .unconfirmed, 10, "the known-good safe state confirmed")
            assert sim.values()["pump_speed"] == KNOWN_GOOD_PUMP
    writer = events(cfg.journal, "second_writer")[0]
    event = events(cfg.journal, "rollout_fallback")[0]
    assert (event.body["cause"], event.body["cause_seq"]) == ("second_writer", writer.seq)
    assert not [e for e in journal_entries(cfg.journal, {EntryKind.TRIP})
                if e.body["event"] == "guard_trip"]  # no trip: the evidence was the device's


async def test_a_known_good_not_stored_here_is_journaled_and_the_trip_holds_its_own_safe_state(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    good = check_mapping(known_good_doc())
    doc = new_version_doc(good, window_s=60)
    doc["rollout"]["known_good"] = "0" * 64  # a contract this device never accepted
    path = tmp_path / "v3.cose"
    path.write_bytes(signer(check_mapping(doc)))
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
        cfg = AgentConfig(device="d1", site="s1", journal=tmp_path / "journal.db",
                          trusted_key=keys[1], contract=path,
                          modbus=ModbusConfig(host="127.0.0.1", port=sim.port, timeout_s=0.3))
        async with running_agent(cfg) as agent:
            await _running_version_3(agent)
            sim.set("level", 4.8)
            failed = await eventually(lambda: events(cfg.journal, "rollout_fallback_failed"), 10,
                                      "the fallback that could not happen, journaled")
            await eventually(lambda: agent.scan.segments["tank-fill"].state.mode.value == "safe",
                             5, "version 3 in its own safe state")
            assert sim.values()["pump_speed"] == 0
    trip = events(cfg.journal, "guard_trip")[0]
    assert {k: failed[0].body[k] for k in ("of", "known_good", "cause", "cause_seq")} == {
        "of": "tank-fill", "known_good": "0" * 64, "cause": "guard_trip", "cause_seq": trip.seq}
    assert "not stored here" in failed[0].body["reason"]
    assert events(cfg.journal, "rollout_fallback") == []
