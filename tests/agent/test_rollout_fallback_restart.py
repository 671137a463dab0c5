"""The rollout fallback survives an agent stopped at its worst moments (a real agent on a real tank
simulator, its journal on disk, standalone: the fallback never needs the hub):
- right after the trip was journaled, before the fallback was decided and saved: the restarted
  agent finds the trip in its journal and resumes as the known-good contract;
- after `rollout_fallback` was journaled, before the known-good contract was started: the
  restarted agent starts it, and journals the fallback only once.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import AgentConfig, ModbusConfig
from agent.process import Agent
from agent.segment import ActiveContract
from contracts.chain import EntryKind
from contracts.codec import content_hash
from contracts.engine import EngineState
from contracts.loader import check_mapping
from contracts.schema import Contract
from simulators.server import SimDevice
from tests.agent.helpers import events, journal_entries, running_agent
from tests.agent.test_rollout_fallback_e2e import KNOWN_GOOD_PUMP, known_good_doc, new_version_doc
from tests.waiting import eventually

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, keys: tuple[Path, Path], port: int,
            signer: Callable[[Contract], bytes]) -> tuple[AgentConfig, str, str]:
    good = check_mapping(known_good_doc())
    new = check_mapping(new_version_doc(good, window_s=60))
    files = []
    for c in (good, new):
        files.append(tmp_path / f"v{c.version}.cose")
        files[-1].write_bytes(signer(c))
    cfg = AgentConfig(device="d1", site="s1", journal=tmp_path / "journal.db", trusted_key=keys[1],
                      modbus=ModbusConfig(host="127.0.0.1", port=port, timeout_s=0.3),
                      contract=files[0], contracts=(files[1],))
    return cfg, content_hash(good), content_hash(new)


async def _running_version_3(agent: Agent) -> None:
    await eventually(lambda: any(s.active.contract.version == 3 and s.step_name() == "fill"
                                 for s in agent.scan.segments.values()), 15, "version 3 filling")
    await eventually(lambda: agent.fallback.windows, 5, "its window opened")
    await agent.fallback._save()  # as the task does: the window is on disk before the trip


async def _restarted(cfg: AgentConfig, good_hash: str, before: int) -> None:
    async with running_agent(cfg):
        await eventually(lambda: [e for e in journal_entries(cfg.journal, {EntryKind.BOOT})
                                  if e.seq > before], 15, "the restarted agent's segment")
        await eventually(lambda: [e for e in events(cfg.journal, "safe_confirmed")
                                  if e.seq > before], 10, "the known-good safe state confirmed")


def _check_fell_back_once(cfg: AgentConfig, good_hash: str, new_hash: str, before: int) -> None:
    entries = journal_entries(cfg.journal)
    trips = [e for e in entries if e.body.get("event") == "guard_trip"]
    fell = [e for e in entries if e.body.get("event") == "rollout_fallback"]
    assert len(fell) == 1 and fell[0].body["cause_seq"] == trips[0].seq
    assert fell[0].body["fallback"] == "tank-fill@2" and fell[0].body["known_good"] == good_hash
    boots = [e for e in entries if e.kind is EntryKind.BOOT and e.seq > before]
    assert [b.body["hash"] for b in boots] == [good_hash]
    assert boots[0].body["state"]["mode"] == "safe"
    assert boots[0].body["state"]["trip"] == "rollout_fallback"
    refused = [e for e in entries if e.kind is EntryKind.CONTRACT and e.seq > before
               and e.body["event"] == "refused"]
    assert {e.body["refusal"] for e in refused} == {"older_version", "fell_back"}  # the two files


async def test_a_trip_journaled_just_before_a_stop_still_falls_back_at_restart(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
        cfg, good_hash, new_hash = _config(tmp_path, keys, sim.port, signer)
        async with running_agent(cfg) as agent:
            await _running_version_3(agent)
            agent.journal.watchers.remove(agent.fallback.observe)  # stopped before it could act
            sim.set("level", 4.8)
            await eventually(lambda: events(cfg.journal, "guard_trip"), 10, "version 3 tripped")
        before = journal_entries(cfg.journal)[-1].seq
        assert events(cfg.journal, "rollout_fallback") == []
        await _restarted(cfg, good_hash, before)
        assert sim.values()["pump_speed"] == KNOWN_GOOD_PUMP
    _check_fell_back_once(cfg, good_hash, new_hash, before)


async def test_a_stop_between_the_journaled_fallback_and_the_start_resumes_the_known_good(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as sim:
        cfg, good_hash, new_hash = _config(tmp_path, keys, sim.port, signer)
        async with running_agent(cfg) as agent:
            await _running_version_3(agent)

            async def stopped_before_start(_a: ActiveContract, _s: EngineState) -> bool:
                return False  # the agent stopped here: the known-good contract never started
            agent.scan.replace = stopped_before_start  # type: ignore[method-assign]
            sim.set("level", 4.8)
            await eventually(lambda: events(cfg.journal, "rollout_fallback"), 10,
                             "rollout_fallback journaled")
            await eventually(lambda: agent.fallback.windows[new_hash].status.value == "fell_back",
                             5, "the fallback recorded")
        before = journal_entries(cfg.journal)[-1].seq
        assert sim.values()["pump_speed"] == 0  # version 3's own safe state, until the restart
        await _restarted(cfg, good_hash, before)
        assert sim.values()["pump_speed"] == KNOWN_GOOD_PUMP
    _check_fell_back_once(cfg, good_hash, new_hash, before)
