"""The health gate's cycle-counting rule (contracts/rollout_cycles.py) against a real agent's own
count: a real Agent on the tank simulator, its event loop stalled twice so that it skips cycles
(journaled as OVERRUN). What its journal proves equals what it ran, up to the last cycle an entry
stamps (the cycles after it, recorded as they run, are not proven yet)."""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, ModbusConfig
from agent.modbus import ModbusLink
from agent.process import Agent
from contracts.chain import EntryKind
from contracts.journal_events import BootBody, decode_entry
from contracts.loader import check_mapping
from contracts.rollout_health import HealthProof, HealthSpec
from contracts.schema import Contract
from simulators.server import SimDevice
from tests.agent.conftest import tank_document
from tests.agent.helpers import journal_entries, next_scans

pytestmark = pytest.mark.slow


async def test_the_cycles_a_journal_proves_are_the_cycles_the_agent_ran_overruns_included(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    path = tmp_path / "contract.cose"
    path.write_bytes(signer(check_mapping(tank_document())))  # 50 ms scan
    ran: list[int] = []
    async with SimDevice("tank", tick_ms=20, initial={"level": 1.0}) as sim:
        cfg = AgentConfig(device="d1", site="s1", journal=tmp_path / "j.db", trusted_key=keys[1],
                          modbus=ModbusConfig(host="127.0.0.1", port=sim.port, timeout_s=0.5),
                          contract=path)
        agent = Agent(cfg, link=ModbusLink("127.0.0.1", sim.port, timeout_s=0.5))
        original = agent.scan._on_cycle
        assert original is not None

        def record(report: Any) -> None:  # every cycle, from the first
            ran.append(report.now_ms)
            original(report)
        agent.scan._on_cycle = record
        task = asyncio.create_task(agent.run(), name="agent-under-test")
        try:
            await next_scans(agent, 10, timeout_s=15)
            for _ in range(2):
                time.sleep(0.3)  # the loop stalls: ~6 cycles are skipped, then it resumes
                await next_scans(agent, 20)
            entries = journal_entries(cfg.journal)
            await next_scans(agent, 2)  # each cycle in that read has been counted since
            skipped = agent.scan.stats.skipped
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    boot = next(decode_entry(e) for e in entries if e.kind is EntryKind.BOOT)
    assert isinstance(boot, BootBody)
    proof = HealthProof(contract=boot.contract, content_hash=boot.hash,
                        spec=HealthSpec(window_ms=3_600_000))
    proof.feed((e.seq, e.ts_ms, decode_entry(e)) for e in entries)
    (run,) = proof.runs
    last = boot.t0_ms + run.k_max * boot.period_ms
    assert proof.cycles() == len([t for t in ran if t <= last])  # every cycle it ran, no more
    assert skipped >= 2 and run.skipped, "the stalls made the agent skip cycles"
