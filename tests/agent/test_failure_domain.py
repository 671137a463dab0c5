"""One contract's bad register never takes another contract's reads down (issue 11, failure
domain), end to end: a real agent (in-process, real ModbusLink, real SQLite journal) against the
tank simulator on real pymodbus. `tank-valve` is healthy; `tank-pump` writes holding 100, which the
simulator answers with Modbus exception 2 (illegal data address, simulators/server.py
REGISTER_SPAN), so once its step ends its safe state can never be confirmed and it re-asserts it
every scan period. Meanwhile the machine is loaded: now and then one reply comes too late (a real
TCP proxy holds back one request, tests/agent/slow_reply.py). Its own fault is reported; the other
contract's read points stay GOOD throughout and it never trips.

The bug this pins: an exception answer kept the link hurried (as for a dead device), and a hurried
link leaves the rest of a read BAD "disconnected" after one slow reply until a probe reconnects, so
the other contract's guarded input went BAD and it tripped. And a second one: a bad register
adjacent to the other contract's good one was read in one coalesced request across the contracts,
answered exception 2 as a whole, and tripped the other contract at once."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.scan import CycleReport
from contracts.chain import EntryKind
from contracts.journal_events import CONTRACT_TAG
from contracts.schema import Contract
from simulators.server import SimDevice
from tests.agent.slow_reply import SlowReply
from tests.agent.conftest import tank_document
from tests.agent.helpers import events, journal_entries, running_agent, signed_config
from tests.agent.test_multi_contract import LEVEL, _exact_replay, _valve
from tests.waiting import eventually

pytestmark = pytest.mark.slow

BAD_ADDRESS = 100
"""Beyond the simulator's REGISTER_SPAN: every read or write of it answers exception 2."""
SAFE_RETRIES = 40
"""Safe-state re-assertions of the bad contract watched (one per scan period)."""
SLOW_REPLIES = 3
"""Replies held back past the Modbus timeout meanwhile, each on tank-valve's valve read-back."""
READ_COILS = 1


def _bad_pump() -> dict[str, Any]:
    pump = {"name": "pump_speed", "unit_id": 1, "table": "holding", "address": BAD_ADDRESS,
            "type": "uint16", "unit": "rpm", "scale": 0.1, "direction": "write",
            "owner": "tank-pump", "limits": [0, 1500]}
    return tank_document(contract="tank-pump", version=1, points=[LEVEL, pump],
                         safe_state={"pump_speed": 0}, expect={},
                         tolerance={"timing_s": 300, "values": {}},
                         steps=[{"name": "run", "do": {"pump_speed": 1000}, "for_s": 1}])


async def test_a_contract_whose_safe_state_cannot_be_confirmed_leaves_the_others_reads_good(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as tank, \
            SlowReply(tank.port, delay_s=0.5) as proxy:
        cfg = signed_config(tmp_path, keys, proxy.port, signer, _bad_pump(), _valve())
        async with running_agent(cfg) as agent:
            bad_views: list[tuple[int, dict[str, str | None]]] = []
            valve_cycles = [0]
            chained = agent.scan._on_cycle

            def watch(report: CycleReport) -> None:
                if chained is not None:
                    chained(report)
                if report.contract != "tank-valve":
                    return
                valve_cycles[0] += 1
                bad = {n: r.reason for n, r in report.view.items() if not r.good}
                if bad:
                    bad_views.append((report.now_ms, bad))

            agent.scan._on_cycle = watch
            await eventually(lambda: tank.values()["valve_open"], 5, "tank-valve opened its valve")
            await eventually(lambda: "tank-pump@1 mode=completed" in agent.status()
                             and "safe_unconfirmed=pump_speed" in agent.status(), 10,
                             "tank-pump ended, its safe state unconfirmed")
            pump = agent.scan.segments["tank-pump"]
            start = pump.actuator.keeper.attempts
            for i in range(SLOW_REPLIES):
                proxy.arm(READ_COILS)  # tank-valve's valve_open read-back (coil 13)
                await eventually(lambda: proxy.held > i, 5, f"slow reply {i + 1} held back")
                await eventually(lambda: pump.actuator.keeper.attempts
                                 >= start + (i + 1) * SAFE_RETRIES // SLOW_REPLIES, 20,
                                 "tank-pump's safe-state retries go on")
            assert pump.actuator.keeper.attempts >= start + SAFE_RETRIES - SLOW_REPLIES
            assert "safe_unconfirmed=pump_speed" in agent.status()
            assert agent.scan.segments["tank-valve"].state.mode.value == "running"
            assert tank.values()["valve_open"]
            faults = pump.fault_words()
        assert valve_cycles[0] > SAFE_RETRIES
        read_points = {"high_level"}  # tank-valve's guarded input; valve_open is its read-back
        assert [v for v in bad_views if read_points & set(v[1])] == [], \
            f"tank-valve's reads went bad: {bad_views[:5]}"
        # the held-back requests themselves: each a timeout of valve_open's read-back, nothing more
        assert [set(b.items()) for _, b in bad_views] == [{("valve_open", "timeout")}] * SLOW_REPLIES
    valve_trips = [e for e in journal_entries(cfg.journal, {EntryKind.TRIP})
                   if e.body.get(CONTRACT_TAG) == "tank-valve"]
    assert valve_trips == []
    # tank-pump's own fault stays reported, in words, in telemetry and in the journal
    words = "exception 2 (illegal data address) at holding 100"
    assert words in faults["pump_speed"]
    pump_faults = [e.body for e in journal_entries(cfg.journal, {EntryKind.ADAPTER_FAULT})
                   if e.body.get(CONTRACT_TAG) == "tank-pump"]
    assert any(words in f["reason"] and f["code"] == 2 for f in pump_faults), pump_faults
    unconfirmed = [e.body for e in events(cfg.journal, "safe_unconfirmed")
                   if e.body.get(CONTRACT_TAG) == "tank-pump"]
    assert unconfirmed and unconfirmed[0]["points"] == ["pump_speed"]
    _exact_replay(cfg.journal)


async def test_a_bad_register_beside_another_contracts_good_one_leaves_its_reads_good(
        tmp_path: Path, keys: tuple[Path, Path], signer: Callable[[Contract], bytes]) -> None:
    """The two contracts' registers are adjacent (holding 63, the simulator's last, and 64, the
    first it refuses), so their shared read coalesces them into one request (agent/cycle_reads.py),
    which the device answers with exception 2 as a whole."""
    pump = _bad_pump()
    pump["points"][1]["address"] = 64
    valve = _valve()
    valve["points"].append({"name": "spare", "unit_id": 1, "table": "holding", "address": 63,
                            "type": "uint16", "direction": "read", "stale_after_ms": 1000})
    async with SimDevice("tank", port=0, tick_ms=20, initial={"level": 1.0}) as tank:
        cfg = signed_config(tmp_path, keys, tank.port, signer, pump, valve)
        async with running_agent(cfg) as agent:
            spare: list[str | None] = []
            chained = agent.scan._on_cycle

            def watch(report: CycleReport) -> None:
                if chained is not None:
                    chained(report)
                if report.contract == "tank-valve":
                    spare.append(report.view["spare"].reason)

            agent.scan._on_cycle = watch
            await eventually(lambda: "tank-pump@1 mode=completed" in agent.status()
                             and "safe_unconfirmed=pump_speed" in agent.status(), 10,
                             "tank-pump ended, its safe state unconfirmed")
            keeper = agent.scan.segments["tank-pump"].actuator.keeper
            start = keeper.attempts
            await eventually(lambda: keeper.attempts >= start + SAFE_RETRIES // 4, 20,
                             "tank-pump's safe-state retries")
            assert agent.scan.segments["tank-valve"].state.mode.value == "running"
            assert agent.scan.reads.shared > 0  # the two still read at one instant, apart
            faults = agent.scan.segments["tank-pump"].fault_words()
        assert len(spare) > SAFE_RETRIES // 4 and set(spare) == {None}, set(spare)
    assert [e for e in journal_entries(cfg.journal, {EntryKind.TRIP})
            if e.body.get(CONTRACT_TAG) == "tank-valve"] == []
    assert "exception 2 (illegal data address) at holding 64" in faults["pump_speed"]
    _exact_replay(cfg.journal)
