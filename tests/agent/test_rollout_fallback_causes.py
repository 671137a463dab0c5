"""A contract on probation falls back on a cause that is no trip at all: a second Modbus master (a
real pymodbus client) moves its pump while it runs. The engine never left RUNNING; the agent
still falls back to the known-good contract, latched, and names the cause."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from contracts.chain import EntryKind
from contracts.schema import Contract
from simulators.server import SimDevice
from tests.agent.helpers import events, journal_entries, next_scans, running_agent
from tests.agent.test_rollout_fallback_e2e import KNOWN_GOOD_PUMP
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
